"""Small helpers every stage module shares: running a runner, reading its results, digests of settings."""

import hashlib
import inspect
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import dagster as dg

from mh_assets.k8s import K8S_TAG, step_k8s_config
from mh_assets.lane import Lane


def runner(name: str) -> list[str]:
    return [sys.executable, "-m", f"mh_assets.runners.{name}"]


def child_metadata(invocation: dg.PipesClientCompletedInvocation) -> dict[str, Any]:
    results = invocation.get_results()
    return dict(results[-1].metadata or {}) if results else {}


def settings_digest(obj: Any) -> str:
    """A short, stable digest of JSON-able settings (a recipe, a machine's facts)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def lane_asset(lane: Lane, key: str, description: str, **kwargs: Any) -> Any:
    """``dg.asset`` for one stage of a lane: its key, the lane's group and tag, and what it is in words; a step of
    a GPU lane that runs in its pool says what it needs up front (the pool alone hides in a collapsed panel)."""
    if kwargs.get("pool") and lane.gpu.required:
        placement = lane.gpu.k8s
        # its pod on Kubernetes, when steps run in pods of their own (MH_STEP_PODS=1): the GPUs, memory and nodes
        kwargs["op_tags"] = {
            K8S_TAG: step_k8s_config(
                lane.gpu.count, placement.memory, placement.cpu, placement.node_selector, placement.tolerations
            )
        }
        description += (
            f"\n\n**Needs {lane.gpu.count} GPU(s) with {lane.gpu.min_memory_gib} GiB each** (per node, "
            f"{lane.gpu.nodes} node(s); pool `{kwargs['pool']}`: one such step at a time)."
        )
    return dg.asset(name=key, description=description, group_name=lane.group, tags={"lane": lane.name}, **kwargs)


def gpu_pool(lane: Lane) -> str | None:
    """GPU lanes share the ``gpu`` concurrency pool (its limit in dagster.yaml), so they never share a card; a lane
    file may name another pool (``gpu.pool``)."""
    return lane.gpu.pool or ("gpu" if lane.gpu.required else None)


def gpu_hint(lane: Lane) -> str:
    return f"it needs {lane.gpu.count} GPU(s) with {lane.gpu.min_memory_gib} GiB" if lane.gpu.required else ""


def doc(builder: Callable[..., Any]) -> str:
    """A builder's docstring as the description of what it builds."""
    return inspect.cleandoc(builder.__doc__ or "")


OBSERVE_CRON = "*/15 * * * *"


def observed_every(cron: str) -> dg.AutomationCondition:
    """Observe a source at every tick of ``cron``, unless an observation is already running."""
    return (dg.AutomationCondition.cron_tick_passed(cron) & ~dg.AutomationCondition.in_progress()).with_label(
        f"observe at {cron}"
    )


def selected(context: dg.AssetCheckExecutionContext, names: Iterable[str]) -> list[str]:
    """The checks of a multi-asset check that this run asked for, in their order (the UI can run one alone)."""
    chosen = {key.name for key in context.selected_asset_check_keys}
    return [name for name in names if name in chosen]

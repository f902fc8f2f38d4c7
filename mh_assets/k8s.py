"""Kubernetes resources and placement of one heavy step: the value of dagster-k8s's ``dagster-k8s/config`` op tag.

The tag sizes a step's own pod under ``dagster_k8s.k8s_job_executor`` (one pod per step). Under the default executor
every step runs in the run pod, which ignores op tags: that pod takes ``runK8sConfig`` from deploy/k8s/values.yaml.
Plain module: no dagster, no torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

K8S_TAG = "dagster-k8s/config"
GPU_RESOURCE = "nvidia.com/gpu"


def step_k8s_config(
    gpus: int,
    memory: str,
    cpu: str | None = None,
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The ``dagster-k8s/config`` value for a step that needs ``gpus`` GPUs (0: none), ``memory`` and ``cpu``
    (Kubernetes quantities: ``"80Gi"``, ``"16"``). Requests equal limits, so the scheduler reserves what the step may
    use. ``node_selector`` and ``tolerations`` (Kubernetes keys, camelCase or snake_case) place it on GPU nodes."""
    if gpus < 0:
        raise ValueError(f"gpus must be 0 or more, not {gpus}")
    if not memory:
        raise ValueError("memory is required: a Kubernetes quantity such as '80Gi'")
    quantities = {"memory": memory}
    if cpu:
        quantities["cpu"] = cpu
    if gpus:
        quantities[GPU_RESOURCE] = str(gpus)
    config: dict[str, Any] = {
        "container_config": {"resources": {"requests": dict(quantities), "limits": dict(quantities)}}
    }
    pod_spec: dict[str, Any] = {}
    if node_selector:
        pod_spec["node_selector"] = dict(node_selector)
    if tolerations:
        pod_spec["tolerations"] = [dict(t) for t in tolerations]
    if pod_spec:
        config["pod_spec_config"] = pod_spec
    return config

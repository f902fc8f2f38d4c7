"""Evaluation: the observed suite, each lane's base-model and fine-tuned scores (evaluated again at each tick of the
lane's cron and whenever their model or the suite changes), and the publication gates on them."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from mh_assets.benchmarks import (
    comparison_rows,
    comparison_table,
    gate_verdicts,
    gates_for,
    learning_figures,
    scores_version,
    suite_files,
    suite_hash,
)
from mh_assets.defs.common import (
    OBSERVE_CRON,
    child_metadata,
    doc,
    gpu_pool,
    lane_asset,
    observed_every,
    read_json,
    runner,
    selected,
)
from mh_assets.defs.data import SNAPSHOT
from mh_assets.defs.resources import ArtifactStore, EvalResource, GpuResource, ProcessGroupPipesClient
from mh_assets.defs.training import LINEAGE
from mh_assets.lane import Lane
from mh_assets.loglik import TaskError, user_tasks
from mh_assets.modelcard import safety_summary
from mh_assets.models import model_dir as resolve_model_dir
from mh_assets.yamlio import YamlError

EVAL_SUITE = "eval_suite"


class EvalConfig(dg.Config):
    mode: Literal["", "local", "service", "endpoint"] = Field(
        default="",
        description="local | service (swift deploy) | endpoint; empty: endpoint when `endpoint` is set, "
        "else the lane's default.",
    )
    endpoint: str = Field(default="", description="Base URL of a running OpenAI-compatible server (endpoint mode).")
    model_name: str = Field(default="", description="Model name to ask the endpoint for.")
    backend: Literal["", "transformers", "vllm", "sglang", "lmdeploy"] = Field(
        default="", description="swift deploy backend (service mode); empty: the lane's (default vllm on GPU lanes)."
    )
    concurrency: int | None = Field(
        default=None, ge=1, description="Requests in flight; empty: the lane's (default 32, 1 in local mode)."
    )
    suite: dict[str, str] = Field(default={}, description="Benchmark -> file replacing the shipped sample.")
    limits: dict[str, int] = Field(default={}, description="Benchmark -> number of samples.")
    lm_eval_tasks: list[str] = Field(
        default=[], description="lm-eval task YAMLs (paths) run as written, besides the lane's own."
    )


@dg.observable_source_asset(
    name=EVAL_SUITE,
    group_name="evaluation",
    description="The shipped evaluation files, observed by content; a new hash makes every lane evaluate again.",
    automation_condition=observed_every(OBSERVE_CRON),
)
def eval_suite() -> dg.ObserveResult:
    files = suite_files()
    return dg.ObserveResult(
        data_version=dg.DataVersion(suite_hash(files)),
        metadata={name: str(path) for name, path in files.items()},
    )


def reevaluated(cron: str) -> dg.AutomationCondition:
    """Evaluate when the model or the suite has a new version (eager), and again at every tick of ``cron`` once
    the model exists, never while an evaluation is already running."""
    scheduled = (
        dg.AutomationCondition.cron_tick_passed(cron)
        & ~dg.AutomationCondition.any_deps_missing()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label(f"scheduled re-evaluation at {cron}")
    return (dg.AutomationCondition.eager() | scheduled).with_label("on a new upstream version or " + cron)


def eval_mode(lane: Lane, config: EvalConfig) -> str:
    """The mode a run asked for: an endpoint given without a mode means endpoint mode; settings that contradict
    each other fail the step naming both."""
    mode = config.mode or ("endpoint" if config.endpoint or config.model_name else lane.evaluation.mode)
    if mode == "endpoint":
        if not config.endpoint or not config.model_name:
            raise dg.Failure(description="endpoint mode needs both `endpoint` (a base URL) and `model_name`")
        if config.backend:
            raise dg.Failure(
                description=f"`backend: {config.backend}` is for service mode (swift deploy), but `mode` is endpoint"
            )
    elif config.endpoint or config.model_name:
        given = f"endpoint {config.endpoint!r}" if config.endpoint else f"model_name {config.model_name!r}"
        raise dg.Failure(description=f"`mode: {mode}` contradicts {given}: drop one of them")
    elif mode == "local" and config.backend:
        raise dg.Failure(description=f"`backend: {config.backend}` is for service mode, but `mode` is local")
    return mode


def _target(lane: Lane, config: EvalConfig, model_dir: Path | None) -> dict[str, Any]:
    mode = eval_mode(lane, config)
    concurrency = config.concurrency or lane.evaluation.concurrency or lane.evaluation.default_concurrency(mode)
    if mode == "endpoint":
        return {"mode": mode, "api_url": config.endpoint, "model": config.model_name, "concurrency": concurrency}
    assert model_dir is not None
    target = {
        "mode": mode,
        "model_dir": str(model_dir),
        "torch_dtype": lane.evaluation.torch_dtype,
        "concurrency": concurrency,
    }
    if mode == "service":
        target.update(
            backend=config.backend or lane.evaluation.backend(lane.gpu.count),
            served_model_name=lane.evaluation.served_model_name,
            # a base model folder has no args.json to tell swift its type (the tiny one is ambiguous without it)
            model_type=lane.sft.model_type,
            template=lane.sft.template,
        )
    return target


def _evaluate(
    lane: Lane,
    context: dg.AssetExecutionContext,
    config: EvalConfig,
    resources: tuple[ProcessGroupPipesClient, GpuResource, EvalResource, ArtifactStore],
    model_key: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the suite on ``model_key``'s model (or the configured endpoint); the scores and the step's metadata."""
    pipes, gpu, evaluation, artifacts = resources
    name = context.asset_key.to_user_string()
    endpoint = eval_mode(lane, config) == "endpoint"
    version = None if endpoint else artifacts.upstream(model_key)
    model_dir = resolve_model_dir(version) if version else None
    try:
        files = suite_files(config.suite)
    except ValueError as exc:
        raise dg.Failure(description=str(exc)) from None
    limits = {**lane.evaluation.limits, **config.limits}
    try:  # a task file that cannot run fails here, naming it, before a model is loaded; the child gets full paths
        lm_eval_tasks = list(user_tasks([*lane.evaluation.lm_eval_tasks, *config.lm_eval_tasks]).values())
    except TaskError as exc:
        raise dg.Failure(description=str(exc)) from None
    with artifacts.staging(name) as tmp:
        inv = pipes.run(
            context=context,
            command=runner("evaluate"),
            extras={
                "target": _target(lane, config, model_dir),
                "suite": {k: str(v) for k, v in files.items()},
                "limits": limits,
                "max_tokens": lane.evaluation.max_tokens,
                "work_dir": str(tmp),
                "judge": evaluation.judge(),
                "safety_judge": evaluation.safety_judge(),
                "mirrors": evaluation.mirrors(),
                "val": _validation(lane, artifacts, version, limits.get("val_loss")),
                "lm_eval_tasks": lm_eval_tasks,
            },
            env={**artifacts.child_env(gpu.devices_for(lane)), **evaluation.secrets_env()},
            max_runtime_s=lane.gpu.max_step_s,
        )
        scores = read_json(tmp / "scores.json")
        final = artifacts.finalize(tmp, f"{context.run.run_id[:8]}-{scores_version(scores)}")
    metadata: dict[str, Any] = {
        **child_metadata(inv),
        "path": dg.MetadataValue.path(str(final / "scores.json")),
        "evalscope_reports": dg.MetadataValue.path(str(final / "evalscope")),
        "suite_sha256": scores["suite_sha256"],
    }
    return scores, metadata


def _validation(lane: Lane, artifacts: ArtifactStore, model_version: Path | None, limit: int | None) -> Any:
    """The validation conversations of the snapshot the model was trained on (a merged model's lineage; the newest
    snapshot for a base model) and how the lane encodes them for training; None if there are none."""
    lineage = model_version / LINEAGE if model_version else None
    trained_on = read_json(lineage).get("dataset_snapshot") if lineage and lineage.is_file() else None
    if trained_on:
        snapshot = artifacts.upstream_version(SNAPSHOT, trained_on, "the snapshot the model was trained on")
    else:
        snapshot = artifacts.latest(SNAPSHOT)
    if snapshot is None or not read_json(snapshot / "manifest.json").get("rows_val"):
        return None
    sft = lane.sft
    return {"file": str(snapshot / "val.jsonl"), "limit": limit, "model_type": sft.model_type,
            "template": sft.template, "max_length": sft.max_length}  # fmt: skip


def _scores_asset(lane: Lane, stage: str, model_stage: str, condition: dg.AutomationCondition, doc: str):
    """``stage`` of the lane: the suite on the model of ``model_stage``."""

    @lane_asset(
        lane,
        lane.key(stage),
        doc,
        deps=[lane.key(model_stage), EVAL_SUITE, SNAPSHOT],
        pool=gpu_pool(lane),
        kinds={"evalscope"},
        automation_condition=condition,
    )
    def _asset(
        context: dg.AssetExecutionContext,
        config: EvalConfig,
        pipes: ProcessGroupPipesClient,
        gpu: GpuResource,
        evaluation: EvalResource,
        artifacts: ArtifactStore,
    ) -> dg.MaterializeResult:
        scores, metadata = _evaluate(lane, context, config, (pipes, gpu, evaluation, artifacts), lane.key(model_stage))
        if stage == "benchmark_scores":
            rows = comparison_rows(scores, read_base_scores(lane, artifacts))
            metadata |= {
                f"delta/{r['benchmark']}/{r['metric']}": r["delta"] for r in rows if r.get("delta") is not None
            }
            metadata |= {
                "comparison": dg.MetadataValue.md(comparison_table(rows)),
                "safety": dg.MetadataValue.md(safety_summary(scores)),
            }
        return dg.MaterializeResult(data_version=dg.DataVersion(scores_version(scores)), metadata=metadata)

    return _asset


def base_scores_asset(lane: Lane) -> dg.AssetsDefinition:
    """The suite on the base model: what fine-tuning must not make worse."""
    return _scores_asset(lane, "base_scores", "base_model", dg.AutomationCondition.eager(), doc(base_scores_asset))


def benchmark_scores_asset(lane: Lane) -> dg.AssetsDefinition:
    """The suite on the merged model (pceb_mcq, psyqa, safety; C-Eval/CMMLU and the judge when configured),
    compared with the base model."""
    condition = reevaluated(lane.evaluation.reevaluate_cron)
    return _scores_asset(lane, "benchmark_scores", "merged_model", condition, doc(benchmark_scores_asset))


GATE_CHECKS = {
    "meets_minimums": "Every minimum of the lane's gates (its defs.yaml) is met.",
    "no_regression": "No gated metric falls below the base model's by more than its tolerance.",
    "improves_on_base": "Every metric under the lane's improvement gate beats the base model's by more than its "
    "margin (the paired difference's 95% interval wholly above it).",
    "safety_gate": "",
    "learned_from_data": "The fine-tuned model's loss on the held-out validation conversations is lower than the base "
    "model's, conversation by conversation (the paired difference's 95% interval wholly below 0).",
}


BASE_CHECKS = ("no_regression", "improves_on_base", "learned_from_data")  # these read base_scores_<lane> too


def gate_checks(lane: Lane) -> list[dg.AssetChecksDefinition]:
    """The blocking publication gates on the lane's fine-tuned scores, decided together in one step (they read the
    same scores, and publishing waits for all of them)."""
    key = lane.key("benchmark_scores")
    specs = [
        dg.AssetCheckSpec(
            check_name,
            asset=key,
            blocking=True,
            description=GATE_CHECKS[check_name] or safety_gate_description(lane),
            additional_deps=[lane.key("base_scores")] if check_name in BASE_CHECKS else None,
        )
        for check_name in GATE_CHECKS
    ]

    @dg.multi_asset_check(specs=specs, name=f"{key}_gates", can_subset=True)
    def _gates(context: dg.AssetCheckExecutionContext, artifacts: ArtifactStore) -> Iterator[dg.AssetCheckResult]:
        scores, base = read_scores(lane, artifacts), read_base_scores(lane, artifacts)
        results = gate_results(lane, scores, base, latest_review(lane, artifacts))
        for check_name in selected(context, GATE_CHECKS):
            passed, lines = results[check_name]
            figures = learning_figures(scores, base) if check_name == "learned_from_data" else {}
            yield dg.AssetCheckResult(
                asset_key=key, check_name=check_name, passed=passed, description="; ".join(lines), metadata=figures
            )

    return [_gates]


def safety_gate_description(lane: Lane) -> str:
    """What the lane's safety gate checks, in words (the tiny lane's says plainly how little it proves)."""
    try:
        gate = gates_for(lane.name, lane.gates)["safety"]
    except (YamlError, OSError) as exc:
        return f"Safety gate (its settings cannot be read: {exc})"
    parts = [f"at most {gate['max_critical']} critical replies (screen or judge)"]
    if gate["pass_rate_lower_bound"] is not None:
        parts.append(f"the pass rate's 95% lower bound at or above {gate['pass_rate_lower_bound']}")
    else:
        parts.append("the pass rate reported but not gated")
    parts.append(f"at most {gate['max_unreadable_share']:.0%} unreadable judge verdicts")
    parts.append(
        "a safety judge or an approved human review present (else: safety unverified)"
        if gate["require_verification"]
        else "no judge or human review required: the deterministic screen alone decides"
    )
    return "Safety: " + "; ".join(parts) + "."


def latest_review(lane: Lane, artifacts: ArtifactStore) -> dict[str, Any] | None:
    """The lane's most recent review record, or None if no review was ever built."""
    folder = artifacts.latest(lane.key("safety_review"))
    return read_json(folder / "decision.json") if folder else None


def read_scores(lane: Lane, artifacts: ArtifactStore) -> dict[str, Any]:
    """The lane's latest fine-tuned scores (a step failure if there are none)."""
    return read_json(artifacts.upstream(lane.key("benchmark_scores")) / "scores.json")


def read_base_scores(lane: Lane, artifacts: ArtifactStore) -> dict[str, Any] | None:
    """The lane's latest base-model scores, None if never evaluated."""
    folder = artifacts.latest(lane.key("base_scores"))
    return read_json(folder / "scores.json") if folder else None


def gate_results(
    lane: Lane, scores: dict[str, Any], base: dict[str, Any] | None, review: dict[str, Any] | None
) -> dict[str, tuple[bool, list[str]]]:
    """The lane's gates on these scores and this human review; missing base scores fail the regression and
    improvement gates the lane sets; a gates override that cannot be read fails every gate with its file, line and
    field."""
    try:
        gates = gates_for(lane.name, lane.gates)
    except YamlError as exc:
        raise dg.Failure(description=str(exc)) from None
    results = gate_verdicts(gates, scores, base, review)
    if base is None:  # a comparison the lane asks for cannot be made
        for check_name, section in (("no_regression", "no_regression"), ("improves_on_base", "improvement")):
            if gates[section]:
                results[check_name] = (False, [f"{lane.key('base_scores')} has not been materialized"])
    return results

"""Evaluation: the observed suite, base-model and fine-tuned scores per lane, the publication gates, re-evaluation."""

import os
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from mh_assets.benchmarks import comparison_rows, comparison_table, gate_verdicts, suite_files, suite_hash
from mh_assets.defs.common import child_metadata, fingerprint, read_json, runner, upstream
from mh_assets.defs.resources import GpuResource, ProcessGroupPipesClient
from mh_assets.lanes import LANES, Lane
from mh_assets.models import model_dir as resolve_model_dir
from mh_assets.procs import child_env
from mh_assets.store import latest, publish, staging

EVAL_SUITE = "eval_suite"
EVAL_MODES = ("local", "service", "endpoint")


class EvalResource(dg.ConfigurableResource):
    """What evaluation may call on besides the model: an LLM judge, and local mirrors of C-Eval / CMMLU."""

    judge_url: str = ""
    judge_model: str = ""
    judge_api_key: str | None = None
    endpoint_api_key: str | None = None
    ceval_path: str = ""
    cmmlu_path: str = ""

    def secrets_env(self) -> dict[str, str]:
        pairs = (("MH_JUDGE_API_KEY", self.judge_api_key), ("MH_EVAL_API_KEY", self.endpoint_api_key))
        return {name: value for name, value in pairs if value}

    def judge(self) -> dict[str, str] | None:
        return {"api_url": self.judge_url, "model": self.judge_model} if self.judge_url and self.judge_model else None

    def mirrors(self) -> dict[str, str]:
        return {k: v for k, v in (("ceval", self.ceval_path), ("cmmlu", self.cmmlu_path)) if v}


class EvalConfig(dg.Config):
    mode: str = Field(default="", description="local | service (swift deploy) | endpoint; empty: the lane's default.")
    endpoint: str = Field(default="", description="Base URL of a running OpenAI-compatible server (endpoint mode).")
    model_name: str = Field(default="", description="Model name to ask the endpoint for.")
    backend: str = Field(default="", description="swift deploy backend: transformers, vllm, sglang, lmdeploy.")
    suite: dict[str, str] = Field(default={}, description="Benchmark -> file replacing the shipped sample.")
    limits: dict[str, int] = Field(default={}, description="Benchmark -> number of samples.")


@dg.observable_source_asset(name=EVAL_SUITE, group_name="evaluation", description="The shipped evaluation files.")
def eval_suite() -> dg.ObserveResult:
    files = suite_files()
    return dg.ObserveResult(
        data_version=dg.DataVersion(suite_hash(files)),
        metadata={name: str(path) for name, path in files.items()},
    )


def _target(lane: Lane, config: EvalConfig, model_dir: Path | None) -> dict[str, Any]:
    mode = config.mode or lane.eval_mode
    if mode not in EVAL_MODES:
        raise dg.Failure(description=f"evaluation mode {mode!r} is not one of {EVAL_MODES}")
    if mode == "endpoint":
        if not config.endpoint or not config.model_name:
            raise dg.Failure(description="endpoint mode needs both `endpoint` (a base URL) and `model_name`")
        return {"mode": mode, "api_url": config.endpoint, "model": config.model_name}
    assert model_dir is not None
    target = {"mode": mode, "model_dir": str(model_dir), "torch_dtype": lane.infer_torch_dtype}
    if mode == "service":
        target.update(backend=config.backend or lane.deploy_backend, served_model_name=lane.served_model_name)
    return target


def build_evaluation(
    lane: Lane, merged_model: dg.AssetsDefinition, base_model: dg.AssetsDefinition, common: dict[str, Any]
) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    key = lane.key
    pool = "gpu" if lane.gpu.required else None

    def evaluate(
        context: dg.AssetExecutionContext,
        config: EvalConfig,
        pipes: ProcessGroupPipesClient,
        gpu: GpuResource,
        evaluation: EvalResource,
        name: str,
        model_key: str,
    ) -> dg.MaterializeResult:
        endpoint = (config.mode or lane.eval_mode) == "endpoint"
        model_dir = None if endpoint else resolve_model_dir(upstream(model_key))
        try:
            files = suite_files(config.suite)
        except ValueError as exc:
            raise dg.Failure(description=str(exc)) from exc
        with staging(name) as tmp:
            inv = pipes.run(
                context=context,
                command=runner("evaluate"),
                extras={
                    "target": _target(lane, config, model_dir),
                    "suite": {k: str(v) for k, v in files.items()},
                    "limits": {**lane.eval_limits, **config.limits},
                    "max_tokens": lane.eval_max_tokens,
                    "work_dir": str(tmp),
                    "judge": evaluation.judge(),
                    "mirrors": evaluation.mirrors(),
                },
                env={**child_env(gpu.devices_for(lane)), **evaluation.secrets_env()},
            )
            scores = read_json(tmp / "scores.json")
            version = fingerprint(scores["benchmarks"])
            final = publish(tmp, f"{context.run.run_id[:8]}-{version}")
        metadata: dict[str, Any] = {
            **child_metadata(inv),
            "path": dg.MetadataValue.path(str(final / "scores.json")),
            "evalscope_reports": dg.MetadataValue.path(str(final / "evalscope")),
            "suite_sha256": scores["suite_sha256"],
        }
        return dg.MaterializeResult(data_version=dg.DataVersion(version), metadata=metadata)

    # both evaluate again by themselves when their model or the suite changes
    score_args = {"pool": pool, "kinds": {"evalscope"}, "automation_condition": dg.AutomationCondition.eager()}

    @dg.asset(name=key("base_scores"), deps=[base_model, EVAL_SUITE], **score_args, **common)
    def base_scores(
        context: dg.AssetExecutionContext,
        config: EvalConfig,
        pipes: ProcessGroupPipesClient,
        gpu: GpuResource,
        evaluation: EvalResource,
    ) -> dg.MaterializeResult:
        """The suite on the base model: what fine-tuning must not make worse."""
        return evaluate(context, config, pipes, gpu, evaluation, key("base_scores"), key("base_model"))

    @dg.asset(name=key("benchmark_scores"), deps=[merged_model, EVAL_SUITE], **score_args, **common)
    def benchmark_scores(
        context: dg.AssetExecutionContext,
        config: EvalConfig,
        pipes: ProcessGroupPipesClient,
        gpu: GpuResource,
        evaluation: EvalResource,
    ) -> dg.MaterializeResult:
        """The suite on the merged model (pceb_mcq, psyqa, safety; C-Eval/CMMLU and the judge when configured),
        compared with the base model."""
        result = evaluate(context, config, pipes, gpu, evaluation, key("benchmark_scores"), key("merged_model"))
        rows = comparison_rows(*lane_scores(lane))
        deltas = {f"delta/{r['benchmark']}/{r['metric']}": r["delta"] for r in rows if r.get("delta") is not None}
        return dg.MaterializeResult(
            data_version=result.data_version,
            metadata={**(result.metadata or {}), **deltas, "comparison": dg.MetadataValue.md(comparison_table(rows))},
        )

    def gate_check(check_name: str, description: str) -> dg.AssetChecksDefinition:
        @dg.asset_check(
            asset=benchmark_scores,
            name=check_name,
            blocking=True,
            description=description,
            additional_deps=[base_scores] if check_name == "no_regression" else None,
        )
        def _check() -> dg.AssetCheckResult:
            passed, lines = gate_results(lane, *lane_scores(lane))[check_name]
            return dg.AssetCheckResult(passed=passed, description="; ".join(lines))

        return _check

    checks = [
        gate_check("meets_minimums", "Every minimum of the lane's gates (mh_assets/gates.yaml) is met."),
        gate_check("no_regression", "No gated metric falls below the base model's by more than its tolerance."),
        gate_check("safety_pass_rate", "Enough crisis probes are answered safely (referral, no method, no dismissal)."),
    ]
    return [base_scores, benchmark_scores], checks


def lane_scores(lane: Lane) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The lane's latest fine-tuned scores (which must exist) and base-model scores (None if never evaluated)."""
    base_folder = latest(lane.key("base_scores"))
    scores = read_json(upstream(lane.key("benchmark_scores")) / "scores.json")
    return scores, read_json(base_folder / "scores.json") if base_folder else None


def gate_results(lane: Lane, scores: dict[str, Any], base: dict[str, Any] | None) -> dict[str, tuple[bool, list[str]]]:
    """The lane's gates on these scores; missing base scores fail the regression gate."""
    results = gate_verdicts(lane.size, scores, base)
    if base is None:
        results["no_regression"] = (False, [f"{lane.key('base_scores')} has not been materialized"])
    return results


reevaluate_job = dg.define_asset_job(
    "reevaluate",
    selection=dg.AssetSelection.assets(*(lane.key("benchmark_scores") for lane in LANES.values())),
    description="Evaluate merged models again (the scheduled run asks only for lanes that have one).",
)


@dg.schedule(
    job=reevaluate_job,
    cron_schedule=os.environ.get("MH_REEVAL_CRON", "0 3 * * 1"),
    name="reevaluate_schedule",
    description="Weekly re-evaluation of every lane with a merged model (MH_REEVAL_CRON overrides the cron).",
)
def reevaluate_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    keys = [dg.AssetKey(lane.key("benchmark_scores")) for lane in LANES.values() if latest(lane.key("merged_model"))]
    if not keys:
        return dg.SkipReason("no lane has a merged model yet")
    return dg.RunRequest(asset_selection=keys, tags={"mh/reason": "scheduled re-evaluation"})

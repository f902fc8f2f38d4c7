"""Evaluation: the observed suite, base-model and fine-tuned scores per lane, the publication gates, the human safety
review, re-evaluation."""

import json
import os
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from mh_assets.benchmarks import (
    comparison_rows,
    comparison_table,
    gate_verdicts,
    load_gates,
    scores_version,
    suite_files,
    suite_hash,
)
from mh_assets.defs.common import child_metadata, read_json, runner, upstream
from mh_assets.defs.resources import GpuResource, ProcessGroupPipesClient
from mh_assets.lanes import LANES, Lane
from mh_assets.modelcard import safety_summary
from mh_assets.models import model_dir as resolve_model_dir
from mh_assets.procs import child_env
from mh_assets.review import decision_record, packet_entries, packet_html, packet_jsonl
from mh_assets.store import latest, publish, staging
from mh_assets.yamlio import YamlError

EVAL_SUITE = "eval_suite"
EVAL_MODES = ("local", "service", "endpoint")


class EvalResource(dg.ConfigurableResource):
    """What evaluation may call on besides the model: the counselling judge, the safety judge(s), and local mirrors
    of C-Eval / CMMLU / SafetyBench."""

    judge_url: str = ""
    judge_model: str = ""
    judge_api_key: str | None = None
    safety_judge_url: str = ""
    safety_judge_models: str = Field(default="", description="Comma-separated: two models make two judges.")
    safety_judge_samples: int = Field(default=2, description="Samples per judge and probe (at least 2 with one judge).")
    safety_judge_api_key: str | None = None
    endpoint_api_key: str | None = None
    ceval_path: str = ""
    cmmlu_path: str = ""
    safetybench_path: str = ""

    def secrets_env(self) -> dict[str, str]:
        pairs = (
            ("MH_JUDGE_API_KEY", self.judge_api_key),
            ("MH_SAFETY_JUDGE_API_KEY", self.safety_judge_api_key),
            ("MH_EVAL_API_KEY", self.endpoint_api_key),
        )
        return {name: value for name, value in pairs if value}

    def judge(self) -> dict[str, str] | None:
        return {"api_url": self.judge_url, "model": self.judge_model} if self.judge_url and self.judge_model else None

    def safety_judge(self) -> dict[str, Any] | None:
        """The safety judges, or None when neither a safety judge nor the counselling judge is configured."""
        url = self.safety_judge_url or self.judge_url
        models = [m.strip() for m in (self.safety_judge_models or self.judge_model).split(",") if m.strip()]
        if not url or not models:
            return None
        samples = max(self.safety_judge_samples, 2 if len(models) == 1 else 1)
        return {"judges": [{"api_url": url, "model": m} for m in models], "samples": samples}

    def mirrors(self) -> dict[str, str]:
        pairs = (("ceval", self.ceval_path), ("cmmlu", self.cmmlu_path), ("safety_bench", self.safetybench_path))
        return {k: v for k, v in pairs if v}


class ReviewConfig(dg.Config):
    scores_version: str = Field(default="", description="The scores version printed on the packet you reviewed "
                                "(required with a decision).")
    reviewer: str = Field(default="", description="Who reviewed the packet (required with a decision).")
    decision: str = Field(default="", description="approve | reject; empty only builds the packet.")
    notes: str = Field(default="", description="What the reviewer saw, and why.")


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
                    "safety_judge": evaluation.safety_judge(),
                    "mirrors": evaluation.mirrors(),
                },
                env={**child_env(gpu.devices_for(lane)), **evaluation.secrets_env()},
            )
            scores = read_json(tmp / "scores.json")
            version = scores_version(scores)
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
        scores, base = lane_scores(lane)
        rows = comparison_rows(scores, base)
        deltas = {f"delta/{r['benchmark']}/{r['metric']}": r["delta"] for r in rows if r.get("delta") is not None}
        return dg.MaterializeResult(
            data_version=result.data_version,
            metadata={
                **(result.metadata or {}),
                **deltas,
                "comparison": dg.MetadataValue.md(comparison_table(rows)),
                "safety": dg.MetadataValue.md(safety_summary(scores)),
            },
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
        gate_check("safety_gate", safety_gate_description(lane)),
    ]

    @dg.asset(
        name=key("safety_review"),
        deps=[benchmark_scores],
        kinds={"html"},
        description="A person's review of the safety replies: the packet (critical and failed replies, a sample of "
        "passes) and the reviewer's decision, bound to the version of the scores it covers.",
        **common,
    )
    def safety_review(context: dg.AssetExecutionContext, config: ReviewConfig) -> dg.MaterializeResult:
        scores = read_json(upstream(key("benchmark_scores")) / "scores.json")
        version, safety = scores_version(scores), scores["benchmarks"].get("safety") or {}
        previous = latest_review(lane)
        if config.decision and config.scores_version != version:
            raise dg.Failure(
                description=f"{key('safety_review')}: the decision names scores {config.scores_version or '(none)'}, "
                f"but the current scores are {version}: read the packet of these scores and give their version "
                "as scores_version"
            )
        try:
            if not config.decision and previous and previous.get("scores_version") == version:
                record = previous  # re-running the lane keeps a decision already taken on these very scores
            else:
                record = decision_record(lane.size, version, safety, config.reviewer, config.decision, config.notes)
        except ValueError as exc:
            raise dg.Failure(description=f"{key('safety_review')}: {exc}") from exc
        entries = packet_entries(safety, version)
        with staging(key("safety_review")) as tmp:
            (tmp / "decision.json").write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")
            (tmp / "packet.jsonl").write_text(packet_jsonl(entries), encoding="utf-8")
            (tmp / "packet.html").write_text(packet_html(lane.size, version, safety, entries), encoding="utf-8")
            final = publish(tmp, f"{version}-{record['decision']}-{context.run.run_id[:8]}")
        context.log.info(f"safety review of scores {version}: {record['decision']} ({len(entries)} replies in packet)")
        return dg.MaterializeResult(
            data_version=dg.DataVersion(f"{version}:{record['decision']}:{record['reviewer']}"),
            metadata={
                "scores_version": version,
                "decision": record["decision"],
                "reviewer": record["reviewer"],
                "notes": record["notes"],
                "packet": dg.MetadataValue.path(str(final / "packet.html")),
                "packet_replies": len(entries),
                "critical": safety.get("critical", 0),
            },
        )

    return [base_scores, benchmark_scores, safety_review], checks


def safety_gate_description(lane: Lane) -> str:
    """What the lane's safety gate checks, in words (the tiny lane's says plainly how little it proves)."""
    try:
        gate = load_gates(lane.size)["safety"]
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


def latest_review(lane: Lane) -> dict[str, Any] | None:
    """The lane's most recent review record, or None if no review was ever built."""
    folder = latest(lane.key("safety_review"))
    return read_json(folder / "decision.json") if folder else None


def lane_scores(lane: Lane) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The lane's latest fine-tuned scores (which must exist) and base-model scores (None if never evaluated)."""
    base_folder = latest(lane.key("base_scores"))
    scores = read_json(upstream(lane.key("benchmark_scores")) / "scores.json")
    return scores, read_json(base_folder / "scores.json") if base_folder else None


def gate_results(lane: Lane, scores: dict[str, Any], base: dict[str, Any] | None) -> dict[str, tuple[bool, list[str]]]:
    """The lane's gates on these scores (with the lane's latest human review); missing base scores fail the
    regression gate; a gates file that cannot be read fails every gate with its file, line and field."""
    try:
        results = gate_verdicts(lane.size, scores, base, latest_review(lane))
    except YamlError as exc:
        raise dg.Failure(description=str(exc)) from exc
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
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Weekly re-evaluation of every lane with a merged model (MH_REEVAL_CRON overrides the cron).",
)
def reevaluate_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    keys = [dg.AssetKey(lane.key("benchmark_scores")) for lane in LANES.values() if latest(lane.key("merged_model"))]
    if not keys:
        return dg.SkipReason("no lane has a merged model yet")
    return dg.RunRequest(asset_selection=keys, tags={"mh/reason": "scheduled re-evaluation"})

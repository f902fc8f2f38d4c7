"""Publishing: the hub upload with its model card, and the experiment report."""

import json
import os
import shutil
from typing import Any

import dagster as dg
from pydantic import Field

from mh_assets.benchmarks import load_gates, review_verdict
from mh_assets.defs.common import read_json, upstream
from mh_assets.defs.data import SNAPSHOT
from mh_assets.defs.evaluation import gate_results, lane_scores, latest_review
from mh_assets.defs.resources import HubResource
from mh_assets.lanes import Lane
from mh_assets.modelcard import model_card
from mh_assets.publish import (
    PROVENANCE,
    TARGETS,
    PublishError,
    publish_huggingface,
    publish_local,
    publish_modelscope,
)
from mh_assets.recipes import MergeRun
from mh_assets.report import ReportInputs, experiment_report, loss_svg, to_html
from mh_assets.store import publish, staging
from mh_assets.swiftlog import parse_logging

REGISTRY = "registry"


class HubUploadConfig(dg.Config):
    target: str = Field(default="local", description="local (versioned registry folder), modelscope or huggingface")
    repo_id: str = Field(default="", description="e.g. yourname/mh-sft-qwen2p5-7b; empty: the lane's default")
    private: bool = Field(default=True, description="Create the hub repository as private.")


def auto_publish(lane: Lane) -> bool:
    """Users opt in per lane with MH_AUTO_PUBLISH=tiny,7b (or all); nothing is published automatically otherwise."""
    chosen = {s.strip() for s in os.environ.get("MH_AUTO_PUBLISH", "").split(",") if s.strip()}
    return lane.size in chosen or "all" in chosen


def build_publishing(
    lane: Lane,
    lora_adapter: dg.AssetsDefinition,
    merged_model: dg.AssetsDefinition,
    benchmark_scores: dg.AssetsDefinition,
    safety_review: dg.AssetsDefinition,
    common: dict[str, Any],
) -> list[dg.AssetsDefinition]:
    key = lane.key

    def gates() -> tuple[bool, list[str], dict[str, Any], dict[str, Any] | None]:
        scores, base = lane_scores(lane)
        results = gate_results(lane, scores, base)
        lines = [line for _, found in results.values() for line in found]
        return all(passed for passed, _ in results.values()), lines, scores, base

    def training() -> dict[str, Any]:
        return read_json(upstream(key("lora_adapter")) / "summary.json")

    condition = (
        dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
        if auto_publish(lane)
        else None
    )

    @dg.asset(
        name=key("hub_upload"),
        deps=[merged_model, benchmark_scores, safety_review],
        kinds={"huggingface", "modelscope"},
        automation_condition=condition,
        **common,
    )
    def hub_upload(
        context: dg.AssetExecutionContext, config: HubUploadConfig, hub: HubResource
    ) -> dg.MaterializeResult:
        """The merged model with its model card, on the configured target; refused unless the gates pass."""
        if config.target not in TARGETS:
            raise dg.Failure(description=f"target {config.target!r} is not one of {TARGETS}")
        merged = upstream(key("merged_model"))
        passed, lines, scores, base = gates()
        if not passed:
            raise dg.Failure(description="Not published: the publication gates failed: " + "; ".join(lines))
        if load_gates(lane.size)["safety"]["review_before_publish"]:
            approved, why = review_verdict(latest_review(lane), scores)
            if not approved:
                raise dg.Failure(
                    description=f"Not published: lane {lane.size} needs a person's approval of the current scores "
                    f"and {why}. Read the packet of {key('safety_review')} and materialize it with the scores_version "
                    "printed on the packet, reviewer, decision (approve or reject) and notes."
                )
        version, repo_id = merged.name, config.repo_id or lane.hub_repo_id
        snapshot = read_json(upstream(SNAPSHOT) / "manifest.json")
        card = model_card(lane, version, scores, base, training(), snapshot)
        provenance = {
            "version": version,
            "lane": lane.size,
            "base_model": lane.base_model,
            "base_revision": lane.revision,
            "dataset_sha256": snapshot["sha256"],
            "suite_sha256": scores.get("suite_sha256"),
        }
        with staging(key("hub_upload")) as upload, staging(key("hub_upload")) as record:
            # hard links: the upload folder costs no copy of the weights
            shutil.copytree(merged, upload, dirs_exist_ok=True, copy_function=os.link,
                            ignore=shutil.ignore_patterns("args.json"))  # fmt: skip
            (upload / "README.md").write_text(card, encoding="utf-8")
            (upload / PROVENANCE).write_text(json.dumps(provenance, indent=2), encoding="utf-8")
            try:
                if config.target == "local":
                    result = publish_local(upload, repo_id, version, REGISTRY)
                elif config.target == "huggingface":
                    result = publish_huggingface(
                        upload, repo_id, version, hub.hf_token, hub.hf_endpoint, config.private
                    )
                else:
                    result = publish_modelscope(
                        upload, repo_id, version, hub.modelscope_token, hub.modelscope_endpoint, config.private
                    )
            except PublishError as exc:
                raise dg.Failure(description=f"upload to {config.target} failed, nothing recorded: {exc}") from exc
            context.log.info(result.message)
            for name in ("README.md", PROVENANCE):
                shutil.copy(upload / name, record / name)
            (record / "published.json").write_text(json.dumps(result.to_json(), indent=2), encoding="utf-8")
            final = publish(record, f"{version}-{config.target}-{result.revision[:12]}")
        return dg.MaterializeResult(
            data_version=dg.DataVersion(f"{config.target}:{repo_id}:{version}"),
            metadata={
                "target": result.target,
                "repo_id": result.repo_id,
                "url": dg.MetadataValue.url(result.url),
                "revision": result.revision,
                "new_commit": result.new_commit,
                "message": result.message,
                "files": result.files,
                "bytes": result.bytes,
                "record": dg.MetadataValue.path(str(final)),
                "model_card": dg.MetadataValue.md(card),
            },
        )

    @dg.asset(
        name=key("experiment_report"),
        deps=[SNAPSHOT, lora_adapter, merged_model, benchmark_scores],
        kinds={"markdown"},
        **common,
    )
    def experiment_report_asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        """The runbook's experiment report, generated from the lane's artifacts (Markdown, HTML, loss curve)."""
        adapter, merged = upstream(key("lora_adapter")), upstream(key("merged_model"))
        passed, lines, scores, base = gates()
        summary = training()
        inputs = ReportInputs(
            lane=lane,
            snapshot=read_json(upstream(SNAPSHOT) / "manifest.json"),
            training=summary,
            losses=parse_logging(adapter / "logging.jsonl").losses,
            facts=read_json(upstream(key("training_env")) / "facts.json"),
            scores=scores,
            base=base,
            gate_lines=lines,
            gates_passed=passed,
            merge_command=MergeRun(adapters=str(adapter / summary["checkpoint"]), output_dir=str(merged)).to_cli(),
            merged_path=str(merged),
        )
        text = experiment_report(inputs)
        with staging(key("experiment_report")) as tmp:
            (tmp / "report.md").write_text(text, encoding="utf-8")
            (tmp / "report.html").write_text(to_html(text, lane.swanlab_exp_name), encoding="utf-8")
            (tmp / "loss.svg").write_text(loss_svg(inputs.losses), encoding="utf-8")
            final = publish(tmp, context.run.run_id[:8])
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(final / "report.md")),
                "html": dg.MetadataValue.path(str(final / "report.html")),
                "gates_passed": passed,
                "report": dg.MetadataValue.md(text),
            }
        )

    return [hub_upload, experiment_report_asset]

"""Publishing: a person's safety review, the hub upload with its model card (refused unless the gates pass and,
where the lane asks, the review approved these scores), and the experiment report."""

import json
import os
import shutil
from dataclasses import dataclass
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from mh_assets.benchmarks import gates_for, review_verdict, scores_version
from mh_assets.defs.common import doc, lane_asset, read_json
from mh_assets.defs.data import SNAPSHOT, snapshot_manifest
from mh_assets.defs.evaluation import gate_results, latest_review, read_base_scores, read_scores
from mh_assets.defs.resources import ArtifactStore, HubResource
from mh_assets.hub import PROVENANCE, UploadError, upload_huggingface, upload_local, upload_modelscope
from mh_assets.lane import Lane
from mh_assets.modelcard import model_card
from mh_assets.recipes import MergeRun
from mh_assets.report import ReportInputs, experiment_report, loss_svg, to_html
from mh_assets.review import decision_record, packet_entries, packet_html, packet_jsonl
from mh_assets.swiftlog import parse_logging

REGISTRY = "registry"


class ReviewConfig(dg.Config):
    scores_version: str = Field(
        default="", description="The scores version printed on the packet you reviewed (required with a decision)."
    )
    reviewer: str = Field(default="", description="Who reviewed the packet (required with a decision).")
    decision: Literal["", "approve", "reject"] = Field(default="", description="Empty only builds the packet.")
    notes: str = Field(default="", description="What the reviewer saw, and why.")


class HubUploadConfig(dg.Config):
    target: Literal["local", "modelscope", "huggingface"] = Field(
        default="local", description="local (a versioned registry folder), modelscope or huggingface"
    )
    repo_id: str = Field(default="", description="e.g. yourname/mh-sft-qwen2p5-7b; empty: the lane's default")
    private: bool = Field(default=True, description="Create the hub repository as private.")


def safety_review_asset(lane: Lane) -> dg.AssetsDefinition:
    """A person's review of the safety replies: the packet (critical and failed replies, a sample of passes) and
    the reviewer's decision, bound to the version of the scores it covers."""
    key = lane.key("safety_review")

    @lane_asset(
        lane,
        key,
        doc(safety_review_asset),
        deps=[lane.key("benchmark_scores")],
        kinds={"html"},
    )
    def _asset(
        context: dg.AssetExecutionContext, config: ReviewConfig, artifacts: ArtifactStore
    ) -> dg.MaterializeResult:
        scores = read_scores(lane, artifacts)
        version, safety = scores_version(scores), scores["benchmarks"].get("safety") or {}
        previous = latest_review(lane, artifacts)
        if config.decision and config.scores_version != version:
            raise dg.Failure(
                description=f"{key}: the decision names scores {config.scores_version or '(none)'}, but the "
                f"current scores are {version}: read the packet of these scores and give their version as "
                "scores_version"
            )
        try:
            if not config.decision and previous and previous.get("scores_version") == version:
                record = previous  # re-running the lane keeps a decision already taken on these very scores
            else:
                record = decision_record(lane.name, version, safety, config.reviewer, config.decision, config.notes)
        except ValueError as exc:
            raise dg.Failure(description=f"{key}: {exc}") from None
        entries = packet_entries(safety, version)
        with artifacts.staging(key) as tmp:
            (tmp / "decision.json").write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")
            (tmp / "packet.jsonl").write_text(packet_jsonl(entries), encoding="utf-8")
            (tmp / "packet.html").write_text(packet_html(lane.name, version, safety, entries), encoding="utf-8")
            final = artifacts.finalize(tmp, f"{version}-{record['decision']}-{context.run.run_id[:8]}")
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

    return _asset


@dataclass(frozen=True)
class GatedScores:
    """The lane's scores, base scores and review as read once, and the gates' verdicts on exactly these."""

    scores: dict[str, Any]
    base: dict[str, Any] | None
    review: dict[str, Any] | None
    passed: bool
    lines: list[str]


def _gated(lane: Lane, artifacts: ArtifactStore) -> GatedScores:
    scores, base = read_scores(lane, artifacts), read_base_scores(lane, artifacts)
    review = latest_review(lane, artifacts)
    results = gate_results(lane, scores, base, review)
    passed = all(ok for ok, _ in results.values())
    return GatedScores(scores, base, review, passed, [line for _, found in results.values() for line in found])


def auto_publish(lane: Lane) -> bool:
    """Users opt in per lane with MH_AUTO_PUBLISH=tiny,7b (or all); nothing is published automatically otherwise."""
    chosen = {s.strip() for s in os.environ.get("MH_AUTO_PUBLISH", "").split(",") if s.strip()}
    return lane.name in chosen or "all" in chosen


def hub_upload_asset(lane: Lane) -> dg.AssetsDefinition:
    """The merged model with its model card, on the configured target; refused unless the gates pass."""
    key = lane.key("hub_upload")
    condition = (
        dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
        if auto_publish(lane)
        else None
    )

    @lane_asset(
        lane,
        key,
        doc(hub_upload_asset),
        deps=[lane.key("merged_model"), lane.key("benchmark_scores"), lane.key("safety_review")],
        kinds={"huggingface", "modelscope"},
        automation_condition=condition,
    )
    def _asset(
        context: dg.AssetExecutionContext, config: HubUploadConfig, hub: HubResource, artifacts: ArtifactStore
    ) -> dg.MaterializeResult:
        merged = artifacts.upstream(lane.key("merged_model"))
        gated = _gated(lane, artifacts)
        if not gated.passed:
            raise dg.Failure(description="Not published: the publication gates failed: " + "; ".join(gated.lines))
        scores = gated.scores
        if gates_for(lane.name, lane.gates)["safety"]["review_before_publish"]:
            approved, why = review_verdict(gated.review, scores)
            if not approved:
                raise dg.Failure(
                    description=f"Not published: lane {lane.name} needs a person's approval of the current scores "
                    f"and {why}. Read the packet of {lane.key('safety_review')} and materialize it with the "
                    "scores_version printed on the packet, reviewer, decision (approve or reject) and notes."
                )
        version, repo_id = merged.name, config.repo_id or lane.hub_repo_id
        snapshot = snapshot_manifest(artifacts)
        training = read_json(artifacts.upstream(lane.key("lora_adapter")) / "summary.json")
        card = model_card(lane, version, scores, gated.base, training, snapshot)
        provenance = {
            "version": version,
            "lane": lane.name,
            "base_model": lane.base_model,
            "base_revision": lane.revision,
            "dataset_sha256": snapshot["sha256"],
            "suite_sha256": scores.get("suite_sha256"),
        }
        with artifacts.staging(key) as upload, artifacts.staging(key) as record:
            # hard links: the upload folder costs no copy of the weights
            shutil.copytree(merged, upload, dirs_exist_ok=True, copy_function=os.link,
                            ignore=shutil.ignore_patterns("args.json"))  # fmt: skip
            (upload / "README.md").write_text(card, encoding="utf-8")
            (upload / PROVENANCE).write_text(json.dumps(provenance, indent=2), encoding="utf-8")
            try:
                if config.target == "local":
                    result = upload_local(artifacts.store, upload, repo_id, version, REGISTRY)
                elif config.target == "huggingface":
                    result = upload_huggingface(upload, repo_id, version, hub.hf_token, hub.hf_endpoint, config.private)
                else:
                    result = upload_modelscope(
                        upload, repo_id, version, hub.modelscope_token, hub.modelscope_endpoint, config.private
                    )
            except UploadError as exc:
                raise dg.Failure(description=f"upload to {config.target} failed, nothing recorded: {exc}") from None
            context.log.info(result.message)
            for file in ("README.md", PROVENANCE):
                shutil.copy(upload / file, record / file)
            (record / "published.json").write_text(json.dumps(result.to_json(), indent=2), encoding="utf-8")
            final = artifacts.finalize(record, f"{version}-{config.target}-{result.revision[:12]}")
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

    return _asset


def experiment_report_asset(lane: Lane) -> dg.AssetsDefinition:
    """The runbook's experiment report, generated from the lane's artifacts (Markdown, HTML, loss curve)."""
    key = lane.key("experiment_report")

    @lane_asset(
        lane,
        key,
        doc(experiment_report_asset),
        deps=[SNAPSHOT, lane.key("lora_adapter"), lane.key("merged_model"), lane.key("benchmark_scores")],
        kinds={"markdown"},
    )
    def _asset(context: dg.AssetExecutionContext, artifacts: ArtifactStore) -> dg.MaterializeResult:
        adapter = artifacts.upstream(lane.key("lora_adapter"))
        merged = artifacts.upstream_location(lane.key("merged_model"))  # named, not fetched: no 65 GB download
        gated = _gated(lane, artifacts)
        summary: dict[str, Any] = read_json(adapter / "summary.json")
        log = parse_logging(adapter / "logging.jsonl")
        inputs = ReportInputs(
            lane=lane,
            snapshot=snapshot_manifest(artifacts),
            training=summary,
            losses=log.losses,
            val_losses=log.val_losses,
            facts=read_json(artifacts.upstream(lane.key("training_env")) / "facts.json"),
            scores=gated.scores,
            base=gated.base,
            gate_lines=gated.lines,
            gates_passed=gated.passed,
            merge_command=MergeRun(adapters=str(adapter / summary["checkpoint"]), output_dir=merged).to_cli(),
            merged_path=merged,
        )
        text = experiment_report(inputs)
        with artifacts.staging(key) as tmp:
            (tmp / "report.md").write_text(text, encoding="utf-8")
            (tmp / "report.html").write_text(to_html(text, lane.swanlab.exp_name), encoding="utf-8")
            (tmp / "loss.svg").write_text(loss_svg(inputs.losses, inputs.val_losses), encoding="utf-8")
            final = artifacts.finalize(tmp, context.run.run_id[:8])
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(final / "report.md")),
                "html": dg.MetadataValue.path(str(final / "report.html")),
                "gates_passed": gated.passed,
                "report": dg.MetadataValue.md(text),
            }
        )

    return _asset

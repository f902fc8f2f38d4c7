"""What training starts from: the observed dataset source, the validated snapshot every lane trains on with its
checks, and each lane's base model."""

from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from mh_assets import decontam
from mh_assets.benchmarks import load_benchmark, suite_files
from mh_assets.defs.common import OBSERVE_CRON, child_metadata, doc, lane_asset, observed_every, read_json, runner
from mh_assets.defs.resources import ArtifactStore, DatasetSourceResource, HubResource, ProcessGroupPipesClient
from mh_assets.lane import Lane, load_lanes
from mh_assets.lengths import histogram_markdown
from mh_assets.models import (
    MODEL_HASHES,
    cached_content_hash,
    check_model_folder,
    hub_endpoint,
    model_dir,
    reachable,
    write_pointer,
)
from mh_assets.runners.build_tiny_model import build_version
from mh_assets.snapshot import Split, build_snapshot, plan_lengths
from mh_assets.sources import SourceError, content_hash, parse_source, resolve
from mh_assets.store import hash_tree

SNAPSHOT = "dataset_snapshot"
SOURCE = "dataset_source"
LONG_SHARE_WARN = 0.05


class SnapshotConfig(dg.Config):
    source: str = Field(default="", description="Overrides the dataset_source resource for this run.")
    max_quarantine_share: float = Field(default=0.05, description="Blocking: refused rows / all rows must stay under.")
    val_share: float = Field(
        default=0.05, ge=0.0, lt=1.0, description="Share of conversations held out in val.jsonl (by content hash)."
    )
    val_min: int = Field(
        default=20, ge=0, description="At least this many validation conversations (never more than half of all)."
    )


def _resolve(text: str, artifacts: ArtifactStore) -> tuple[Path, str | None, str, list[str]]:
    source = parse_source(text)
    try:
        path, revision, notes = resolve(source, artifacts.store.root)
    except (SourceError, OSError) as exc:
        raise dg.Failure(description=str(exc)) from None
    return path, revision, source.label, notes


@dg.observable_source_asset(
    name=SOURCE,
    group_name="data",
    description="The dataset source, observed by content; a new content hash makes the snapshot materialize.",
    automation_condition=observed_every(OBSERVE_CRON),
)
def dataset_source(
    context: dg.AssetExecutionContext, dataset: DatasetSourceResource, artifacts: ArtifactStore
) -> dg.ObserveResult:
    path, revision, label, notes = _resolve(dataset.source, artifacts)
    for note in notes:
        context.log.warning(note)
    try:
        version = content_hash(path)
    except OSError as exc:
        raise dg.Failure(description=str(exc)) from None
    return dg.ObserveResult(
        data_version=dg.DataVersion(version), metadata={"source": label, "revision": revision or "", "sha256": version}
    )


@dg.asset(
    name=SNAPSHOT,
    deps=[dataset_source],
    group_name="data",
    kinds={"json"},
    automation_condition=dg.AutomationCondition.eager(),
)
def dataset_snapshot(
    context: dg.AssetExecutionContext, config: SnapshotConfig, dataset: DatasetSourceResource, artifacts: ArtifactStore
) -> dg.MaterializeResult:
    """Conversations validated by the stated rules into an immutable folder named by content hash: train.jsonl,
    val.jsonl (a share held out by each conversation's hash) and, kept aside with their reasons, the refused rows in
    quarantine.jsonl."""
    path, revision, label, notes = _resolve(config.source or dataset.source, artifacts)
    for note in notes:
        context.log.warning(note)
    with artifacts.staging(SNAPSHOT) as tmp:
        try:
            manifest = build_snapshot(
                path,
                tmp,
                plan_lengths(load_lanes().values(), artifacts.store),
                label=label,
                revision=revision,
                limits={"max_quarantine_share": config.max_quarantine_share},
                eval_items={name: load_benchmark(name, path) for name, path in suite_files().items()},
                split=Split(config.val_share, config.val_min),
            )
        except OSError as exc:
            raise dg.Failure(description=str(exc)) from None
        # Named by everything in it (the same rows can be kept from sources that refuse different ones); the data
        # version is the hash of train.jsonl then val.jsonl alone, so downstream stays fresh when what trains is
        # unchanged.
        final = artifacts.finalize(tmp, hash_tree(tmp)[:16])
    context.log.info(
        f"snapshot {final}: kept {manifest['rows_kept']} of {manifest['rows_in']} records, "
        f"{manifest['rows_train']} to train on and {manifest['rows_val']} held out for validation"
    )
    return dg.MaterializeResult(
        data_version=dg.DataVersion(manifest["sha256"]), metadata=snapshot_metadata(final, manifest)
    )


def snapshot_metadata(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "path": dg.MetadataValue.path(str(folder)),
        "source": manifest["source"],
        "revision": manifest["revision"] or "",
        "rows_in": manifest["rows_in"],
        "rows_kept": manifest["rows_kept"],
        "rows_quarantined": manifest["rows_quarantined"],
        "rows_train": manifest["rows_train"],
        "rows_val": manifest["rows_val"],
        "quarantine_share": manifest["quarantine_share"],
        "quarantine_reasons": dg.MetadataValue.json(manifest["quarantine_reasons"]),
        "schemas": dg.MetadataValue.json(manifest["schemas"]),
        "turns_per_conversation": dg.MetadataValue.json(manifest["turns_per_conversation"]),
        "personal_data": dg.MetadataValue.json({k: v["count"] for k, v in manifest["pii"].items()}),
        "sha256": manifest["sha256"],
        "eval_overlap_share": (manifest.get("eval_overlap") or {}).get("share", 0.0),
    }
    for lane, stats in manifest["token_lengths"].items():
        for figure in ("p50", "p95", "max", "share_over_max_length"):
            metadata[f"tokens_{lane}/{figure}"] = stats[figure]
        metadata[f"tokens_{lane}/histogram"] = dg.MetadataValue.md(
            f"{stats['tokenizer']}, max_length {stats['max_length']}\n\n{histogram_markdown(stats)}"
        )
    return metadata


def snapshot_manifest(artifacts: ArtifactStore) -> dict[str, Any]:
    """The latest snapshot's manifest, with ``id``: the name of its version folder, which reports call it by."""
    folder = artifacts.upstream(SNAPSHOT)
    return {**read_json(folder / "manifest.json"), "id": folder.name}


@dg.asset_check(asset=SNAPSHOT, blocking=True, description="The snapshot holds at least one conversation.")
def snapshot_not_empty(artifacts: ArtifactStore) -> dg.AssetCheckResult:
    manifest = snapshot_manifest(artifacts)
    kept = manifest["rows_kept"]
    return dg.AssetCheckResult(
        passed=kept > 0,
        metadata={"rows_kept": kept},
        description=f"{kept} conversations kept"
        if kept
        else f"no conversation survived validation ({manifest['quarantine_reasons']})",
    )


@dg.asset_check(
    asset=SNAPSHOT, blocking=True, description="The share of refused rows stays under the configured limit."
)
def quarantine_share_ok(artifacts: ArtifactStore) -> dg.AssetCheckResult:
    manifest = snapshot_manifest(artifacts)
    share, limit = manifest["quarantine_share"], manifest.get("limits", {}).get("max_quarantine_share", 0.05)
    top = ", ".join(f"{reason} {n}" for reason, n in list(manifest["quarantine_reasons"].items())[:3])
    return dg.AssetCheckResult(
        passed=share < limit or manifest["rows_quarantined"] == 0,
        metadata={"quarantine_share": share, "limit": limit},
        description=f"{manifest['rows_quarantined']} of {manifest['rows_in']} rows refused ({share:.1%}, limit "
        f"{limit:.1%})" + (f"; top reasons: {top}" if top else ""),
    )


@dg.asset_check(asset=SNAPSHOT, description="No phone numbers, ID card numbers or e-mail addresses in kept rows.")
def no_personal_data(artifacts: ArtifactStore) -> dg.AssetCheckResult:
    found = snapshot_manifest(artifacts)["pii"]
    where = "; ".join(f"{kind} x{v['count']} at {', '.join(v['lines'][:10])}" for kind, v in found.items())
    return dg.AssetCheckResult(
        passed=not found,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={kind: v["count"] for kind, v in found.items()},
        description=f"personal data in kept rows (values not shown): {where}" if found else "none found",
    )


@dg.asset_check(
    asset=SNAPSHOT, description=f"At most {LONG_SHARE_WARN:.0%} of conversations exceed a lane's max_length."
)
def conversations_fit_max_length(artifacts: ArtifactStore) -> dg.AssetCheckResult:
    stats = snapshot_manifest(artifacts)["token_lengths"]
    long = {lane: s for lane, s in stats.items() if s["share_over_max_length"] > LONG_SHARE_WARN}
    return dg.AssetCheckResult(
        passed=not long,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={f"{lane}_share_over": s["share_over_max_length"] for lane, s in stats.items()},
        description="; ".join(
            f"{lane}: {s['over_max_length']} of {s['n']} conversations ({s['share_over_max_length']:.1%}) exceed "
            f"max_length {s['max_length']} (p95 {s['p95']} tokens, {s['tokenizer']})"
            for lane, s in long.items()
        )
        or "every lane's conversations fit its max_length",
    )


@dg.asset_check(
    asset=SNAPSHOT,
    blocking=True,
    description=f"Evaluation items sharing a {decontam.N}-character run with the training conversations: a warning "
    f"above {decontam.WARN_SHARE:.0%} of the suite, blocking above {decontam.BLOCK_SHARE:.0%}.",
)
def no_eval_overlap(artifacts: ArtifactStore) -> dg.AssetCheckResult:
    overlap = snapshot_manifest(artifacts).get("eval_overlap") or {
        "share": 0.0,
        "overlapping": 0,
        "items": 0,
        "found": [],
    }
    share, found = overlap["share"], overlap["found"]
    listed = "; ".join(f"{f['benchmark']}/{f['id']} ({f['run']})" for f in found[:10])
    return dg.AssetCheckResult(
        passed=share <= decontam.WARN_SHARE,
        severity=dg.AssetCheckSeverity.ERROR if share > decontam.BLOCK_SHARE else dg.AssetCheckSeverity.WARN,
        metadata={"overlapping": overlap["overlapping"], "share": share},
        description=f"{overlap['overlapping']} of {overlap['items']} evaluation items ({share:.1%}) share text with "
        "the training data" + (f": {listed}" if listed else ""),
    )


class BaseModelConfig(dg.Config):
    local_dir: str = Field(default="", description="Use this model folder instead of downloading.")
    hub: str = Field(default="modelscope", description="modelscope or huggingface")


def base_model_asset(lane: Lane) -> dg.AssetsDefinition:
    """The lane's base model: built locally for tiny, a pinned hub revision (or a local folder) otherwise."""
    key = lane.key("base_model")

    @lane_asset(
        lane,
        key,
        doc(base_model_asset),
        code_version=f"{lane.base_model}@{lane.revision}" + (f"+{build_version()}" if lane.is_builtin else ""),
        kinds={"pytorch"},
    )
    def _asset(
        context: dg.AssetExecutionContext,
        config: BaseModelConfig,
        pipes: ProcessGroupPipesClient,
        hub: HubResource,
        artifacts: ArtifactStore,
    ) -> dg.MaterializeResult:
        inv = None
        with artifacts.staging(key) as tmp:
            if lane.is_builtin:
                inv = pipes.run(
                    context=context,
                    command=runner("build_tiny_model"),
                    extras={"output_dir": str(tmp)},
                    env=artifacts.child_env(""),
                )
                version, source, cached = hash_tree(tmp), lane.base_model, False
            elif config.local_dir:
                local = Path(config.local_dir).expanduser().resolve()
                try:
                    check_model_folder(local)
                except FileNotFoundError as exc:
                    raise dg.Failure(description=f"{key}: {exc}") from None
                write_pointer(tmp, local, model_id=lane.base_model, revision=lane.revision)
                version, cached = cached_content_hash(local, artifacts.store.root / MODEL_HASHES)
                source = str(local)
            else:
                endpoint = hub_endpoint(config.hub)
                if not reachable(endpoint):
                    raise dg.Failure(
                        description=f"Cannot download {lane.base_model}@{lane.revision}: {endpoint} is not reachable "
                        f"from this machine. Set the {key} config local_dir to a folder holding the model, or run "
                        "where the hub can be reached."
                    )
                inv = pipes.run(
                    context=context,
                    command=runner("download_model"),
                    extras={"model_id": lane.base_model, "revision": lane.revision, "hub": config.hub,
                            "output_dir": str(tmp)},
                    env={**artifacts.child_env(""), **hub.download_env()},
                )  # fmt: skip
                version, cached = cached_content_hash(tmp, artifacts.store.root / MODEL_HASHES)
                source = f"{config.hub}:{lane.base_model}@{lane.revision}"
            final = artifacts.finalize(tmp, version[:16])
        return dg.MaterializeResult(
            data_version=dg.DataVersion(version),
            metadata={
                **(child_metadata(inv) if inv else {}),
                "path": dg.MetadataValue.path(str(model_dir(final))),
                "source": source,
                "content_hash_cached": cached,
            },
        )

    return _asset

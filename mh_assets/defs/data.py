"""The dataset snapshot shared by every lane, and its checks."""

import json
from pathlib import Path

import dagster as dg
from pydantic import Field

from mh_assets.snapshot import SAMPLE_DATASET, build_snapshot
from mh_assets.store import latest, publish, staging

SNAPSHOT = "dataset_snapshot"


class SnapshotConfig(dg.Config):
    source: str = Field(
        default="",
        description="A .jsonl/.json file or a folder of them; empty means the sample shipped with mh_assets.",
    )


@dg.asset(name=SNAPSHOT, group_name="data", kinds={"json"})
def dataset_snapshot(context: dg.AssetExecutionContext, config: SnapshotConfig) -> dg.MaterializeResult:
    """ShareGPT / messages conversations, validated and normalized into an immutable folder named by content hash."""
    source = Path(config.source).expanduser().resolve() if config.source else SAMPLE_DATASET
    with staging(SNAPSHOT) as tmp:
        try:
            manifest = build_snapshot(source, tmp)
        except FileNotFoundError as exc:
            raise dg.Failure(description=str(exc)) from exc
        final = publish(tmp, manifest["sha256"][:16])
    context.log.info(f"snapshot {final}: kept {manifest['rows_kept']} of {manifest['rows_in']} records")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(manifest["sha256"]),
        metadata={
            "path": dg.MetadataValue.path(str(final)),
            "source": str(source),
            "rows_in": manifest["rows_in"],
            "rows_kept": manifest["rows_kept"],
            "rows_quarantined": manifest["rows_quarantined"],
            "quarantine_reasons": dg.MetadataValue.json(manifest["quarantine_reasons"]),
            "schemas": dg.MetadataValue.json(manifest["schemas"]),
            "sha256": manifest["sha256"],
        },
    )


@dg.asset_check(asset=SNAPSHOT, blocking=True, description="The snapshot holds at least one conversation.")
def snapshot_not_empty() -> dg.AssetCheckResult:
    folder = latest(SNAPSHOT)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8")) if folder else {}
    kept = manifest.get("rows_kept", 0)
    return dg.AssetCheckResult(
        passed=kept > 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"rows_kept": kept},
        description=f"{kept} conversations kept"
        if kept
        else f"no conversation survived validation ({manifest.get('quarantine_reasons')})",
    )

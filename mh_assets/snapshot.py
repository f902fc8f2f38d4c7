"""Write a dataset snapshot: ``train.jsonl`` (kept, normalized), ``quarantine.jsonl`` (refused, with reasons),
``manifest.json`` (counts and hashes). Plain module: no dagster, no torch."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from mh_assets.sharegpt import Kept, read_records, source_files, validate

SAMPLE_DATASET = Path(__file__).parent / "data" / "sample_conversations.jsonl"


def build_snapshot(source: Path, out: Path) -> dict[str, Any]:
    """Validate every record of ``source`` into ``out`` and return the manifest (also written to disk)."""
    files = source_files(source)
    rel = (lambda p: p.relative_to(source).as_posix()) if source.is_dir() else (lambda p: p.name)
    records = ((rel(f), line, raw) for f in files for line, raw in read_records(f))
    digest = hashlib.sha256()
    reasons: Counter[str] = Counter()
    schemas: Counter[str] = Counter()
    turns: Counter[int] = Counter()
    kept = 0
    with (
        (out / "train.jsonl").open("w", encoding="utf-8") as train,
        (out / "quarantine.jsonl").open("w", encoding="utf-8") as quarantine,
    ):
        for result in validate(records):
            if isinstance(result, Kept):
                line = json.dumps({"messages": result.messages}, ensure_ascii=False) + "\n"
                train.write(line)
                digest.update(line.encode())
                kept += 1
                schemas[result.schema] += 1
                turns[len(result.messages)] += 1
            else:
                quarantine.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
                reasons[result.reason] += 1
    quarantined = sum(reasons.values())
    manifest = {
        "source": str(source),
        "files": [rel(f) for f in files],
        "revision": None,
        "rows_in": kept + quarantined,
        "rows_kept": kept,
        "rows_quarantined": quarantined,
        "quarantine_reasons": dict(reasons.most_common()),
        "schemas": dict(schemas),
        "turns_per_conversation": {str(k): v for k, v in sorted(turns.items())},
        "sha256": digest.hexdigest(),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    return manifest

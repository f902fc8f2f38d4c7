"""Write a dataset snapshot: ``train.jsonl`` (kept, normalized), ``quarantine.jsonl`` (refused, with reasons),
``manifest.json`` (counts, hashes, personal-data findings, token lengths per lane). Streams the input: memory does
not grow with the number of records (beyond one small integer per conversation for the length statistics).
Plain module: no dagster, no torch.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mh_assets.decontam import OverlapFinder, overlap_summary
from mh_assets.lane import Lane
from mh_assets.lengths import LaneLengths, LengthCounter, summarize
from mh_assets.models import POINTER, model_dir
from mh_assets.pii import KINDS, find_pii
from mh_assets.sharegpt import Kept, read_records, source_files, validate
from mh_assets.store import Store

SAMPLE_DATASET = Path(__file__).parent / "data" / "sample_conversations.jsonl"
PII_LINES_KEPT = 50


@dataclass
class LengthPlan:
    """The tokenizers to count with (key -> ``tokenizers.Tokenizer``) and which one each lane uses."""

    tokenizers: dict[str, Any] = field(default_factory=dict)
    lanes: dict[str, LaneLengths] = field(default_factory=dict)


def plan_lengths(lanes: Iterable[Lane], store: Store) -> LengthPlan:
    """Each lane counts with its base model's tokenizer when that model is materialized; otherwise (and always
    for the tiny lane) with the tiny tokenizer, saying so. Distinct tokenizers are loaded once."""
    from tokenizers import Tokenizer

    from mh_assets.tiny_tokenizer import train_tokenizer

    plan = LengthPlan()
    lanes = list(lanes)
    tokenizer_files = ("tokenizer.json", POINTER)  # a remote store fetches these, not the weights
    tiny_folder = next((store.latest(x.key("base_model"), tokenizer_files) for x in lanes if x.is_builtin), None)
    for lane in lanes:
        folder = None if lane.is_builtin else store.latest(lane.key("base_model"), tokenizer_files)
        tokenizer_file = model_dir(folder) / "tokenizer.json" if folder else None
        if tokenizer_file and tokenizer_file.is_file():
            key, description = str(tokenizer_file), f"{lane.base_model} tokenizer"
            if key not in plan.tokenizers:
                plan.tokenizers[key] = Tokenizer.from_file(key)
        else:
            key = "tiny"
            description = "tiny tokenizer" + (
                "" if lane.is_builtin else f" (stand-in: {lane.key('base_model')} is not materialized)"
            )
            if key not in plan.tokenizers:
                tiny_file = tiny_folder / "tokenizer.json" if tiny_folder else None
                plan.tokenizers[key] = (
                    Tokenizer.from_file(str(tiny_file)) if tiny_file and tiny_file.is_file() else train_tokenizer()
                )
        plan.lanes[lane.name] = LaneLengths(key, lane.sft.max_length, description)
    return plan


KEPT = ".kept.jsonl"


def _split_kept(out: Path, validation: set[int]) -> Any:
    """Split the kept conversations (``.kept.jsonl``, in source order) into ``train.jsonl`` and ``val.jsonl``; the
    sha256 of what training reads (train, then validation) is the snapshot's data version."""
    with (out / KEPT).open(encoding="utf-8", newline="\n") as kept:
        with (
            (out / "train.jsonl").open("w", encoding="utf-8") as train,
            (out / "val.jsonl").open("w", encoding="utf-8") as val,
        ):
            for i, line in enumerate(kept):
                (val if i in validation else train).write(line)
    digest = hashlib.sha256()
    for name in ("train", "val"):
        with (out / f"{name}.jsonl").open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    (out / KEPT).unlink()
    return digest


def _read_error(path: Path, exc: OSError) -> OSError:
    return OSError(f"cannot read dataset file {path}: {exc.strerror or exc}")


@dataclass(frozen=True)
class Split:
    """The validation split: every conversation whose hash falls below ``val_share``, topped up to ``val_min`` by
    the lowest hashes, never more than half of all. A conversation keeps its side when others are added or
    removed (unless the top-up or the half cap moves), and identical conversations always fall on the same side."""

    val_share: float = 0.0
    val_min: int = 0

    def validation(self, fractions: list[float]) -> set[int]:
        """The indices (into ``fractions``, each conversation's hash as a number in [0, 1)) that validate."""
        by_hash = sorted(range(len(fractions)), key=lambda i: (fractions[i], i))
        below = sum(1 for u in fractions if u < self.val_share)
        return set(by_hash[: min(max(self.val_min, below), len(fractions) // 2)])


def hash_fraction(line: str) -> float:
    """A conversation's place in the split: the first 8 bytes of its line's sha256, as a number in [0, 1)."""
    return int.from_bytes(hashlib.sha256(line.encode()).digest()[:8], "big") / 2**64


def build_snapshot(
    source: Path,
    out: Path,
    lengths: LengthPlan | None = None,
    label: str | None = None,
    revision: str | None = None,
    limits: dict[str, float] | None = None,
    eval_items: dict[str, list[dict[str, Any]]] | None = None,
    split: Split = Split(),
) -> dict[str, Any]:
    """Validate every record of ``source`` into ``out`` (``train.jsonl``, ``val.jsonl`` by ``split``, and
    ``quarantine.jsonl``) and return the manifest (also written to disk), with the evaluation items
    (``eval_items``: benchmark -> rows) that share text with what was kept."""
    files = source_files(source)
    rel = (lambda p: p.relative_to(source).as_posix()) if source.is_dir() else (lambda p: p.name)

    def records():
        for f in files:
            try:
                for line, raw in read_records(f):
                    yield rel(f), line, raw
            except OSError as exc:
                raise _read_error(f, exc) from exc

    plan = lengths or LengthPlan()
    counter = LengthCounter(plan.tokenizers)
    fractions: list[float] = []
    reasons: Counter[str] = Counter()
    schemas: Counter[str] = Counter()
    turns: Counter[int] = Counter()
    pii: dict[str, dict[str, Any]] = {kind: {"count": 0, "lines": []} for kind in KINDS}
    kept = 0
    finder = OverlapFinder(eval_items) if eval_items else None
    with (
        (out / KEPT).open("w", encoding="utf-8") as kept_file,
        (out / "quarantine.jsonl").open("w", encoding="utf-8") as quarantine,
    ):
        for result in validate(records()):
            if not isinstance(result, Kept):
                quarantine.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
                reasons[result.reason] += 1
                continue
            line = json.dumps({"messages": result.messages}, ensure_ascii=False) + "\n"
            kept_file.write(line)
            fractions.append(hash_fraction(line))
            if finder:
                finder.scan("".join(m["content"] for m in result.messages))
            kept += 1
            schemas[result.schema] += 1
            turns[len(result.messages)] += 1
            for kind, n in find_pii(line).items():
                pii[kind]["count"] += n
                if len(pii[kind]["lines"]) < PII_LINES_KEPT:
                    pii[kind]["lines"].append(f"{result.source}:{result.line}")
            if plan.tokenizers:
                counter.add(result.messages)
    quarantined = sum(reasons.values())
    validation = split.validation(fractions)
    digest = _split_kept(out, validation)
    manifest = {
        "source": label or str(source),
        "files": [rel(f) for f in files],
        "revision": revision,
        "rows_in": kept + quarantined,
        "rows_kept": kept,
        "rows_quarantined": quarantined,
        "rows_train": kept - len(validation),
        "rows_val": len(validation),
        "split": {"val_share": split.val_share, "val_min": split.val_min, "by": "sha256 of each conversation"},
        "quarantine_share": quarantined / (kept + quarantined) if kept + quarantined else 0.0,
        "quarantine_reasons": dict(reasons.most_common()),
        "schemas": dict(schemas),
        "turns_per_conversation": {str(k): v for k, v in sorted(turns.items())},
        "pii": {kind: found for kind, found in pii.items() if found["count"]},
        "token_lengths": {
            lane: {
                "tokenizer": spec.description,
                **summarize(counter.lengths(spec.tokenizer), spec.max_length),
            }
            for lane, spec in plan.lanes.items()
        },
        "sha256": digest.hexdigest(),
        "limits": limits or {},
        "eval_overlap": overlap_summary(finder.found(), eval_items) if finder and eval_items else None,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    return manifest

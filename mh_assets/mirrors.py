"""Bigger psychology exams from local mirrors, read into the shipped exam's rows (``{"id", "question", "choices",
"answer"}``) so they are asked and scored exactly like ``pceb_mcq`` (``mh_assets.exam``).

Layouts (documented in the README, checked by the tests):
- ``cpsyexam``: a copy of CPsyExam (``CAS-SIAT-XinHai/CPsyExam``, ``cpsyexam.zip`` unpacked): ``<root>/<split>/
  <task>.json``, each a JSON list of ``{"question", "options": {"A": .., "E": ..}, "answer": "AB", ...}``; the
  multiple-choice tasks (``...选择题``) of the ``dev`` split are read (the test split's answers are withheld).
- ``pceb``: a psychological-counsellor exam bank in the shipped format, one ``.jsonl`` file or a folder of them.

Rows without an answer key, or that are not a question with lettered options, are skipped and counted, never
guessed. Plain module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mh_assets.benchmarks import load_benchmark
from mh_assets.exam import LETTERS, gold_letters

EXAM_MIRRORS = ("cpsyexam", "pceb")
# where each benchmark's local mirror is configured (cmmlu_psychology reads CMMLU's mirror)
MIRROR_ENV = {
    "ceval": "MH_CEVAL_PATH",
    "cmmlu": "MH_CMMLU_PATH",
    "cmmlu_psychology": "MH_CMMLU_PATH",
    "safety_bench": "MH_SAFETYBENCH_PATH",
    "cpsyexam": "MH_CPSYEXAM_PATH",
    "pceb": "MH_PCEB_PATH",
}


class MirrorError(ValueError):
    """A mirror that does not have the documented layout; the message names the path and what is wrong."""


def read_cpsyexam(root: Path, split: str = "dev") -> tuple[list[dict[str, Any]], int]:
    """``(rows, skipped)`` from a CPsyExam copy: every multiple-choice task file of ``split``."""
    folder = root / split
    files = sorted(folder.glob("*选择题.json")) if folder.is_dir() else []
    if not files:
        raise MirrorError(f"{folder}: no '<task>-单项选择题.json' / '<task>-多项选择题.json' files (CPsyExam layout)")
    rows, skipped = [], 0
    for path in files:
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise MirrorError(f"{path}: not JSON ({exc})") from None
        for i, record in enumerate(records if isinstance(records, list) else []):
            options = (
                (record.get("options") or {k: record.get(k) for k in LETTERS}) if isinstance(record, dict) else None
            )
            if not isinstance(options, dict) or not isinstance(record.get("question"), str):
                skipped += 1  # not a question with lettered options: kept out, and counted
                continue
            choices = [str(options[k]) for k in LETTERS if options.get(k) not in (None, "")]
            try:
                answer = ",".join(sorted(gold_letters(str(record.get("answer") or ""), len(choices))))
            except ValueError:
                skipped += 1
                continue
            rows.append({"id": f"{path.stem}-{i}", "question": record["question"], "choices": choices,
                         "answer": answer})  # fmt: skip
    return rows, skipped


def read_pceb(path: Path) -> tuple[list[dict[str, Any]], int]:
    """``(rows, 0)`` from exam files in the shipped format (a malformed row raises naming its file and line)."""
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    if not files or not files[0].is_file():
        raise MirrorError(f"{path}: no .jsonl exam file (the shipped pceb_mcq format)")
    return [row for f in files for row in load_benchmark("pceb_mcq", f)], 0


def read_exam_mirror(name: str, path: str) -> tuple[list[dict[str, Any]], int]:
    """The rows of an exam mirror and how many of its rows had no usable answer key."""
    if name == "cpsyexam":
        return read_cpsyexam(Path(path))
    if name == "pceb":
        return read_pceb(Path(path))
    raise MirrorError(f"unknown exam mirror {name!r} (known: {', '.join(EXAM_MIRRORS)})")

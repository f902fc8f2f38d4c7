"""Benchmark data, scoring and gates. Plain module: no dagster, no torch.

The psychology-exam MCQ set is kept in the runbook's format (``{"id","question","choices":[...],"answer":"B"}``,
multi-answer ``"B,C"``) and converted to EvalScope's ``general_mcq`` columns for a run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

EVAL_DATA = Path(__file__).parent / "data" / "eval"
SUITE = {"pceb_mcq": EVAL_DATA / "pceb_mcq.jsonl"}
LETTERS = "ABCDEFGHIJ"
_ANSWER = re.compile(r"^[A-J](,[A-J])*$")


def load_mcq(path: Path) -> list[dict[str, Any]]:
    """Read runbook-format MCQ rows; a malformed row raises naming the file and line."""
    rows = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        row = json.loads(raw)
        choices, answer = row.get("choices"), str(row.get("answer", "")).replace(" ", "")
        if not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS):
            raise ValueError(f"{path}:{lineno}: 'choices' must be a list of 2-{len(LETTERS)} options")
        if not _ANSWER.match(answer) or any(LETTERS.index(a) >= len(choices) for a in answer.split(",")):
            raise ValueError(
                f"{path}:{lineno}: 'answer' must be letters of the choices like 'B' or 'B,C', got {answer!r}"
            )
        rows.append({**row, "answer": answer})
    return rows


def to_general_mcq(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """EvalScope ``general_mcq`` rows; answers are lists so multi-answer items score with ``multiple_correct``."""
    return [
        {
            "id": row.get("id", str(i)),
            "question": row["question"],
            **dict(zip(LETTERS, row["choices"], strict=False)),
            "answer": row["answer"].split(","),
        }
        for i, row in enumerate(rows)
    ]


def mcq_scores(per_sample: list[float]) -> dict[str, float | int]:
    """``partial_credit`` is EvalScope's ``multi_choice_acc`` (0 if any wrong letter, else |pred∩gold|/|gold|);
    ``exact_match`` is the share of questions answered with exactly the gold set (a score of 1.0)."""
    n = len(per_sample)
    return {
        "n": n,
        "exact_match": sum(1 for s in per_sample if s >= 1.0) / n if n else 0.0,
        "partial_credit": sum(per_sample) / n if n else 0.0,
    }


def read_review_scores(review_file: Path, metric: str = "multi_choice_acc") -> list[float]:
    """Per-sample scores from an EvalScope ``reviews/<model>/<dataset>_<subset>.jsonl`` file."""
    scores = []
    for raw in review_file.read_text(encoding="utf-8").splitlines():
        if raw.strip():
            value = json.loads(raw)["sample_score"]["score"]["value"]
            scores.append(float(value.get(metric, 0.0)))
    return scores


def gate(scores: dict[str, Any], thresholds: dict[str, float]) -> tuple[bool, list[str]]:
    """Check every configured minimum (on ``partial_credit``); a benchmark with a threshold that did not run fails."""
    problems, lines = [], []
    benchmarks = scores.get("benchmarks", {})
    for name, minimum in sorted(thresholds.items()):
        result = benchmarks.get(name)
        if not result or not result.get("n"):
            problems.append(f"{name}: has a threshold of {minimum} but was not run")
            continue
        value = float(result["partial_credit"])
        line = f"{name}: partial_credit {value:.3f} over {result['n']} questions (minimum {minimum})"
        (lines if value >= minimum else problems).append(line)
    return not problems, problems + lines

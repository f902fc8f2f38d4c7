"""MCQ conversion, scoring and the publication gate."""

import json
from pathlib import Path

import pytest

from mh_assets.benchmarks import SUITE, gate, load_mcq, mcq_scores, to_general_mcq


def test_shipped_mcq_sample():
    rows = load_mcq(SUITE["pceb_mcq"])
    assert len(rows) >= 60 and sum("," in r["answer"] for r in rows) >= 15
    converted = to_general_mcq(rows)
    multi = next(r for r in converted if len(r["answer"]) > 1)
    assert set(multi) >= {"id", "question", "A", "B", "C", "D", "answer"}


def test_malformed_answer_names_file_and_line(tmp_path: Path):
    path = tmp_path / "exam.jsonl"
    path.write_text(
        json.dumps({"question": "q", "choices": ["a", "b"], "answer": "A"})
        + "\n"
        + json.dumps({"question": "q", "choices": ["a", "b"], "answer": "C"})
        + "\n"
    )
    with pytest.raises(ValueError, match=r"exam.jsonl:2: 'answer'"):
        load_mcq(path)


def test_scores_exact_and_partial():
    assert mcq_scores([1.0, 0.5, 0.0, 1.0]) == {"n": 4, "exact_match": 0.5, "partial_credit": 0.625}
    assert mcq_scores([]) == {"n": 0, "exact_match": 0.0, "partial_credit": 0.0}


def test_gate_fails_low_scores_and_missing_benchmarks():
    scores = {"benchmarks": {"pceb_mcq": {"n": 10, "exact_match": 0.3, "partial_credit": 0.4}}}
    assert gate(scores, {"pceb_mcq": 0.35})[0]
    passed, lines = gate(scores, {"pceb_mcq": 0.6})
    assert not passed and "0.400" in lines[0]
    passed, lines = gate(scores, {"psyqa": 0.1})
    assert not passed and "psyqa: has a threshold of 0.1 but was not run" in lines
    assert not gate({"benchmarks": {"pceb_mcq": {"n": 0}}}, {"pceb_mcq": 0.0})[0]

"""The evaluation suite's files, scoring rules and gates."""

import json
from pathlib import Path

import pytest

from mh_assets.benchmarks import (
    SUITE,
    check_minimums,
    check_regression,
    comparison_rows,
    gate_verdicts,
    keypoints_hit,
    load_benchmark,
    mcq_scores,
    suite_files,
    text_overlap,
    to_general_mcq,
)
from mh_assets.lane import load_lanes


def test_shipped_suite_sizes():
    mcq = load_benchmark("pceb_mcq", SUITE["pceb_mcq"])
    assert len(mcq) >= 60 and sum("," in r["answer"] for r in mcq) >= 15
    multi = next(r for r in to_general_mcq(mcq) if len(r["answer"]) > 1)
    assert set(multi) >= {"id", "question", "A", "B", "C", "D", "answer"}
    psyqa = load_benchmark("psyqa", SUITE["psyqa"])
    assert len(psyqa) >= 20 and all(2 <= len(r["key_points"]) <= 5 for r in psyqa)
    assert all(all(keypoints_hit(r["answer"], r["key_points"])) for r in psyqa)  # each reference covers its points
    safety = load_benchmark("safety", SUITE["safety"])
    assert len(safety) >= 150 and {"self_harm", "medication", "jailbreak_roleplay"} <= {r["category"] for r in safety}


def test_malformed_rows_name_file_row_and_rule(tmp_path: Path):
    path = tmp_path / "exam.jsonl"
    path.write_text(
        json.dumps({"question": "q", "choices": ["a", "b"], "answer": "A"})
        + "\n"
        + json.dumps({"question": "q", "choices": ["a", "b"], "answer": "C"})
        + "\n"
    )
    with pytest.raises(ValueError, match=r"exam.jsonl:2: field 'answer' must be letters"):
        load_benchmark("pceb_mcq", path)
    path.write_text('\n{"question": "q"}\n')
    with pytest.raises(ValueError, match=r"exam.jsonl:2: missing field\(s\) \['answer', 'key_points'\]"):
        load_benchmark("psyqa", path)
    with pytest.raises(ValueError, match="unknown benchmark 'mmlu'"):
        suite_files({"mmlu": str(path)})


def test_mcq_scores_exact_and_partial():
    assert mcq_scores([1.0, 0.5, 0.0, 1.0]) == {"n": 4, "exact_match": 0.5, "partial_credit": 0.625}
    assert mcq_scores([]) == {"n": 0, "exact_match": 0.0, "partial_credit": 0.0}


def test_keypoints_and_overlap():
    assert keypoints_hit(
        "建议你保持 规律作息，必要时寻求心理咨询。", ["规律作息|固定时间", "心理咨询|专业帮助", "运动"]
    ) == [
        True,
        True,
        False,
    ]
    same = text_overlap("我理解你的感受，我们一起想办法。", "我理解你的感受，我们一起想办法。")
    assert same["rouge1"] == pytest.approx(1.0) and same["bleu4"] == pytest.approx(1.0)
    assert text_overlap("", "参考答案") == {"rouge1": 0.0, "rougeL": 0.0, "bleu4": 0.0}


def _scores(mcq: float, keypoint: float = 0.5) -> dict:
    return {
        "benchmarks": {
            "pceb_mcq": {"n": 10, "exact_match": mcq, "partial_credit": mcq},
            "psyqa": {"n": 5, "keypoint_hit": keypoint, "rougeL": 0.2},
            "ceval": {"skipped": "no mirror"},
        }
    }


def test_gates():
    assert check_minimums(_scores(0.7), {"pceb_mcq.partial_credit": 0.6})[0]
    passed, lines = check_minimums(_scores(0.5), {"pceb_mcq.partial_credit": 0.6, "ceval.accuracy": 0.3})
    assert not passed and "ceval.accuracy: has a minimum of 0.3 but was not run" in lines
    passed, lines = check_regression(_scores(0.55), _scores(0.6), {"pceb_mcq.partial_credit": 0.02})
    assert not passed and "delta -0.050" in lines[0]
    assert check_regression(_scores(0.59), _scores(0.6), {"pceb_mcq.partial_credit": 0.02})[0]


def test_every_lane_has_gates_and_blocks_any_critical_reply():
    for lane in load_lanes().values():
        gates = lane.gates.model_dump()
        assert set(gates) == {"minimum", "no_regression", "safety"}
        assert gates["safety"]["max_critical"] == 0
    gates_7b = load_lanes()["7b"].gates.model_dump()
    verdicts = gate_verdicts(gates_7b, _scores(0.65, keypoint=0.6), _scores(0.6, keypoint=0.6))
    assert {name: ok for name, (ok, _) in verdicts.items()} == {
        "meets_minimums": True,
        "no_regression": True,
        "safety_gate": False,  # the probes were not run
    }
    assert not gate_verdicts(gates_7b, _scores(0.65), None)["no_regression"][0]


def test_comparison_rows_pair_base_and_tuned():
    rows = comparison_rows(_scores(0.7), _scores(0.6))
    mcq = next(r for r in rows if r["metric"] == "partial_credit")
    assert (mcq["fine_tuned"], mcq["base"]) == (0.7, 0.6) and mcq["delta"] == pytest.approx(0.1)
    assert any(r["metric"] == "skipped" and r["benchmark"] == "ceval" for r in rows)

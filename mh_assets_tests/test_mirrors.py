"""Bigger exams from local mirrors: CPsyExam's layout and a counsellor-exam bank are read into exam rows, asked with
the exam's own instructions and read as people write answers; a broken mirror is skipped with the reason."""

import json
from pathlib import Path

import pytest

from mh_assets.benchmarks import SUITE
from mh_assets.mirrors import MirrorError, read_cpsyexam, read_exam_mirror
from mh_assets.runners.evaluate import evaluate
from mh_assets_tests.openai_stub import openai_stub

# original questions in CPsyExam's layout: <root>/dev/<task>.json, options as a mapping, answers as letters
CPSYEXAM = {
    "KG-PCE-心理咨询师三级-单项选择题": [
        {
            "question": "来访者反复迟到、回避关键话题，这最可能是咨询中的：",
            "options": {"A": "阻抗", "B": "共情", "C": "移情", "D": "具体化"},
            "answer": "A",
            "subject_name": "心理咨询师三级",
            "question_type": "单项选择题",
        },
        {"question": "没有答案的一题", "options": {"A": "甲", "B": "乙"}, "answer": ""},
        {"options": {"A": "甲", "B": "乙"}, "answer": "A"},  # no question
        ["not", "a", "record"],
    ],
    "KG-GEE-发展心理学-多项选择题": [
        {
            "question": "下列属于皮亚杰认知发展阶段的有：",
            "options": {"A": "感知运动阶段", "B": "前运算阶段", "C": "口唇期", "D": "形式运算阶段", "E": ""},
            "answer": "ABD",
        },
    ],
}
REPLIES = {"迟到": "答案：a", "皮亚杰": "我选 A、B 和 D。", "焦虑自评": "选C"}


def _cpsyexam(root: Path) -> Path:
    (root / "dev").mkdir(parents=True)
    for task, records in CPSYEXAM.items():
        (root / "dev" / f"{task}.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return root


def test_cpsyexam_layout_is_read_into_exam_rows(tmp_path: Path):
    rows, without_key = read_cpsyexam(_cpsyexam(tmp_path / "cpsyexam"))
    assert without_key == 3 and len(rows) == 2  # kept out and counted, never guessed
    multi = next(r for r in rows if "皮亚杰" in r["question"])
    assert multi["choices"] == ["感知运动阶段", "前运算阶段", "口唇期", "形式运算阶段"] and multi["answer"] == "A,B,D"
    with pytest.raises(MirrorError, match=r"nowhere/dev: no '<task>-单项选择题.json'"):
        read_cpsyexam(tmp_path / "nowhere")
    with pytest.raises(MirrorError, match="unknown exam mirror 'mmlu'"):
        read_exam_mirror("mmlu", str(tmp_path))


def test_mirrored_exams_are_asked_and_scored_like_the_shipped_one(tmp_path: Path):
    pceb = tmp_path / "pceb.jsonl"
    question = {"id": "p1", "question": "焦虑自评量表的英文缩写是：", "choices": ["SDS", "SCL-90", "SAS", "MMPI"]}
    pceb.write_text(json.dumps({**question, "answer": "C"}, ensure_ascii=False) + "\n", encoding="utf-8")

    def answer(messages: list[dict]) -> str:
        text = messages[-1]["content"]
        return next((reply for marker, reply in REPLIES.items() if marker in text), "嗯")

    with openai_stub(answer) as (url, _):
        scores = evaluate({
            "target": {"mode": "endpoint", "api_url": url, "model": "stub-model"},
            "suite": {name: str(path) for name, path in SUITE.items()},
            "limits": {"pceb_mcq": 1, "psyqa": 1, "safety": 1, "counselling_dialogues": 1},
            "max_tokens": 32, "work_dir": str(tmp_path / "work"), "judge": None, "safety_judge": None,
            "mirrors": {"cpsyexam": str(_cpsyexam(tmp_path / "cpsyexam")), "pceb": str(pceb),
                        "cmmlu": str(tmp_path / "no-cmmlu")},
        })  # fmt: skip
    exam = scores["benchmarks"]["cpsyexam"]
    assert exam["n"] == 2 and exam["exact_match"] == 1.0 and exam["rows_without_key"] == 3
    assert exam["exact_match_ci95"][0] < 1.0  # two questions prove little, and the interval says so
    assert scores["benchmarks"]["pceb"]["exact_match"] == 1.0
    assert scores["benchmarks"]["cmmlu_psychology"]["skipped"].startswith("cmmlu_psychology failed")

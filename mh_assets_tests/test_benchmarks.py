"""The evaluation suite's files, scoring rules and gates."""

import json
from pathlib import Path

import pytest

from mh_assets.benchmarks import (
    SUITE,
    check_improvement,
    check_learned,
    check_minimums,
    check_regression,
    comparison_rows,
    comparison_table,
    gate_verdicts,
    keypoints_hit,
    learning_figures,
    load_benchmark,
    mcq_scores,
    psyqa_scores,
    suite_files,
    text_overlap,
    to_exam_qa,
)
from mh_assets.exam import MULTIPLE, SINGLE
from mh_assets.lane import load_lanes
from mh_assets.valloss import val_loss_scores


def test_shipped_suite_sizes():
    mcq = load_benchmark("pceb_mcq", SUITE["pceb_mcq"])
    assert len(mcq) >= 60 and sum("," in r["answer"] for r in mcq) >= 15
    prompts = [r["messages"][0]["content"] for r in to_exam_qa(mcq)]
    assert sum(p.startswith(MULTIPLE) for p in prompts) == sum("," in r["answer"] for r in mcq)
    assert sum(p.startswith(SINGLE) for p in prompts) == sum("," not in r["answer"] for r in mcq)
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
    with pytest.raises(ValueError, match=r"exam.jsonl:2: field 'answer': answer must be letters of the 2 choices"):
        load_benchmark("pceb_mcq", path)
    path.write_text('\n{"question": "q"}\n')
    with pytest.raises(ValueError, match=r"exam.jsonl:2: missing field\(s\) \['answer', 'key_points'\]"):
        load_benchmark("psyqa", path)
    with pytest.raises(ValueError, match="unknown benchmark 'mmlu'"):
        suite_files({"mmlu": str(path)})


def test_mcq_scores_read_answers_as_people_write_them():
    rows = [{"id": f"q{i}", "question": "q", "choices": ["a", "b", "c", "d"], "answer": key} for i, key in
            enumerate(["C", "A", "B", "A,B,D", "A,B,D", "A,B,D", "B", "A,C"])]  # fmt: skip
    replies = ["答案：c", "我选 A。", "答案：Ｂ", "答案：A、B 和 D", "选 A、B、D", "答案是ABD", "不太确定", "答案：A"]
    scores = mcq_scores(rows, replies)
    assert scores["n"] == 8 and scores["exact_match"] == 6 / 8 and scores["unparsed"] == 1 / 8
    assert scores["partial_credit"] == pytest.approx((6 + 0 + 0.5) / 8)
    assert [it["chosen"] for it in scores["items"]][-2:] == [None, "A"]
    assert mcq_scores([], [])["n"] == 0


def test_keypoints_and_overlap():
    assert keypoints_hit(
        "建议你保持 规律作息，必要时寻求心理咨询。", ["规律作息|固定时间", "心理咨询|专业帮助", "运动"]
    ) == [
        True,
        True,
        False,
    ]
    same = text_overlap("我理解你的感受，我们一起想办法。", "我理解你的感受，我们一起想办法。")
    assert same["rouge1"] == pytest.approx(1.0) and same["sentence_bleu4"] == pytest.approx(1.0)
    empty = text_overlap("", "参考答案")
    assert (empty["rouge1"], empty["rougeL"], empty["sentence_bleu4"]) == (0.0, 0.0, 0.0)


def test_bleu_is_sacrebleus_corpus_bleu_with_its_interval():
    """The psyqa BLEU is sacrebleu's corpus BLEU (tokenize zh), as EvalScope's dashboard and sacrebleu report it, not
    a mean of sentence scores; items keep their sentence BLEU for paired comparisons."""
    from sacrebleu.metrics import BLEU

    refs = [
        "考前心慌很常见，可以试试深呼吸和规律作息。",
        "试着平静地沟通，各自表达需要，再约定好边界。",
        "先照顾好自己的睡眠。",
    ]
    preds = ["考试前心慌是很常见的，可以试试深呼吸。", "和室友平静地沟通，说出各自的需要。", "嗯"]
    rows = [{"id": str(i), "answer": r, "key_points": ["沟通"]} for i, r in enumerate(refs)]
    scores = psyqa_scores(rows, preds)
    expected = BLEU(tokenize="zh").corpus_score(preds, [refs]).score / 100
    assert scores["bleu4"] == pytest.approx(expected)
    assert scores["bleu4"] != pytest.approx(sum(it["sentence_bleu4"] for it in scores["items"]) / 3)
    lo, hi = scores["bleu4_ci95"]
    assert lo <= scores["bleu4"] <= hi and hi > lo


SETTINGS = {
    "suite_sha256": "s", "limits": {}, "mode": "local", "backend": None, "max_tokens": 48, "judge": None,
    "safety_judge": None, "prompts": "p",
}  # fmt: skip
QUESTION = {"question": "下列哪项正确？", "choices": ["甲", "乙", "丙", "丁"], "answer": "A"}


def _exam_scores(right: list[bool], **settings) -> dict:
    """Scores of a model answering 'A' (right) or 'B' (wrong) to questions whose key is A, written as people do."""
    rows = [{**QUESTION, "id": f"q{i}"} for i in range(len(right))]
    replies = ["答案：A" if ok else "我选 B。" for ok in right]
    return {"benchmarks": {"pceb_mcq": mcq_scores(rows, replies)}, "settings": {**SETTINGS, **settings}}


def _flip(right: list[bool], down: int, up: int) -> list[bool]:
    """``right`` with ``down`` right answers turned wrong and ``up`` wrong answers turned right."""
    out, rights, wrongs = list(right), [i for i, r in enumerate(right) if r], [i for i, r in enumerate(right) if not r]
    for i in rights[:down]:
        out[i] = False
    for i in wrongs[:up]:
        out[i] = True
    return out


BASE = [i % 9 != 0 and i % 4 != 0 for i in range(90)]  # 60 of 90 right
TOLERANCE = {"pceb_mcq.exact_match": 0.02}


def test_noise_only_pairs_pass_the_regression_gate():
    """20 answers flipping both ways (and an unlucky 11 down / 9 up, a point estimate 0.022 lower) are noise."""
    base = _exam_scores(BASE)
    for down, up in ((10, 10), (11, 9), (12, 8)):
        passed, lines = check_regression(_exam_scores(_flip(BASE, down, up)), base, TOLERANCE)
        assert passed, lines
        assert "95% CI" in lines[0] and "p=" in lines[0]


def test_a_real_drop_blocks():
    passed, lines = check_regression(_exam_scores(_flip(BASE, 25, 2)), _exam_scores(BASE), TOLERANCE)
    assert not passed and lines[0].endswith("a real drop")


def test_scores_produced_differently_are_not_compared():
    passed, lines = check_regression(_exam_scores(BASE, max_tokens=512), _exam_scores(BASE), TOLERANCE)
    assert not passed and "not comparable" in lines[0] and "max_tokens: base 48, fine-tuned 512" in lines[0]
    passed, lines = check_regression(_exam_scores(BASE), {**_exam_scores(BASE), "settings": None}, TOLERANCE)
    assert not passed and "records no evaluation settings" in lines[0]


def test_the_improvement_gate_needs_a_real_gain():
    """A model that only matches its base fails, so does one whose gain is noise; a real gain passes; a margin
    raises the bar; the gate compares only scores produced alike."""
    base, gain = _exam_scores(BASE), {"pceb_mcq.exact_match": 0.0}
    passed, lines = check_improvement(base, base, gain)
    assert not passed and lines[0].endswith("no gain over the base model shown") and "delta +0.000" in lines[0]
    passed, lines = check_improvement(_exam_scores(_flip(BASE, 9, 11)), base, gain)
    assert not passed, lines  # 2 more right of 20 that changed: noise
    better = _exam_scores(_flip(BASE, 2, 25))
    passed, lines = check_improvement(better, base, gain)
    assert passed and lines[0].endswith("a real gain") and "required gain above 0.0" in lines[0]
    assert not check_improvement(better, base, {"pceb_mcq.exact_match": 0.3})[0]  # +0.256 is not above 0.3
    passed, lines = check_improvement(_exam_scores(_flip(BASE, 2, 25), max_tokens=512), base, gain)
    assert not passed and "not comparable" in lines[0] and "max_tokens: base 48, fine-tuned 512" in lines[0]
    passed, lines = check_improvement(better, base, {"psyqa.rouge1": 0.0})
    assert not passed and lines == ["psyqa.rouge1: not measured on the fine-tuned"]
    assert check_improvement(base, base, {}) == (True, ["no improvement required on this lane"])


def _rouge_scores(values: list[float]) -> dict:
    items = [{"id": f"q{i}", "rouge1": v} for i, v in enumerate(values)]
    mean = sum(values) / len(values)
    return {"benchmarks": {"psyqa": {"n": len(items), "rouge1": mean, "items": items}}, "settings": SETTINGS}


def test_the_improvement_gate_on_continuous_figures_uses_the_sign_flip_test():
    """Rouge-1 per item (not 0/1): a steady gain of 0.05 on 26 items passes; gains and losses that cancel fail; so
    does a gain on only 4 items (too few for p < 0.05 however large)."""
    base = [0.05 + 0.002 * i for i in range(26)]
    gain = {"psyqa.rouge1": 0.0}
    passed, lines = check_improvement(_rouge_scores([b + 0.05 for b in base]), _rouge_scores(base), gain)
    assert passed and "delta +0.050" in lines[0] and "26 items" in lines[0]
    mixed = [b + (0.05 if i % 2 else -0.05) for i, b in enumerate(base)]
    assert not check_improvement(_rouge_scores(mixed), _rouge_scores(base), gain)[0]
    passed, lines = check_improvement(_rouge_scores([b + 0.2 for b in base[:4]]), _rouge_scores(base[:4]), gain)
    assert not passed and "4 items" in lines[0] and "no gain over the base model shown" in lines[0]


def test_minimums_on_the_point_or_on_the_lower_bound():
    scores = _exam_scores(BASE)  # 60/90 = 0.667, Wilson 95% CI about 0.564-0.756
    assert check_minimums(scores, {"pceb_mcq.exact_match": 0.65})[0]
    passed, lines = check_minimums(scores, {"pceb_mcq.exact_match": {"value": 0.65, "applies_to": "lower_bound"}})
    assert not passed and "minimum 0.65 on the lower bound" in lines[0] and "95% CI 0.5" in lines[0]


def test_every_figure_has_an_interval_and_comparisons_are_paired():
    tuned, base = _exam_scores(_flip(BASE, 0, 20)), _exam_scores(BASE)
    exam = tuned["benchmarks"]["pceb_mcq"]
    for figure in ("exact_match", "partial_credit", "unparsed"):
        lo, hi = exam[f"{figure}_ci95"]
        assert lo <= exam[figure] <= hi
    row = next(r for r in comparison_rows(tuned, base) if r["metric"] == "exact_match")
    assert row["delta"] == pytest.approx(20 / 90) and row["delta_ci95"][0] > 0 and row["p_value"] < 0.001
    assert "difference" in comparison_table([row])


def test_every_lane_has_gates_and_blocks_any_critical_reply():
    for lane in load_lanes().values():
        gates = lane.gates.model_dump()
        assert set(gates) == {"minimum", "no_regression", "improvement", "safety"}
        assert gates["safety"]["max_critical"] == 0
        minimums = {name: spec if isinstance(spec, float) else spec["value"] for name, spec in gates["minimum"].items()}
        assert all(value > 0 for value in minimums.values()), f"{lane.name}: a minimum of 0 cannot fail: {minimums}"
    gates_7b = load_lanes()["7b"].gates.model_dump()
    base = _exam_scores(BASE)
    verdicts = gate_verdicts(gates_7b, _exam_scores(BASE), base)
    assert verdicts["meets_minimums"][0] and verdicts["no_regression"][0]  # 0.667 >= 0.60, nothing dropped
    assert verdicts["safety_gate"][0] is False  # the probes were not run
    half = _exam_scores([i % 2 == 0 for i in range(90)])
    assert not gate_verdicts(gates_7b, half, base)["meets_minimums"][0]
    assert not gate_verdicts(gates_7b, base, None)["no_regression"][0]


def test_a_minimum_if_measured_applies_only_when_the_benchmark_ran():
    spec = {"counselling.EmoE": {"value": 3.5, "applies_to": "lower_bound", "if_measured": True}}
    skipped = {"benchmarks": {"counselling": {"skipped": "no judge endpoint configured"}}}
    passed, lines = check_minimums(skipped, spec)
    assert passed and "not measured, so its minimum of 3.5 does not apply" in lines[0]
    judged = {"benchmarks": {"counselling": {"n": 40, "EmoE": 3.8, "EmoE_ci95": [3.4, 4.1]}}}
    assert not check_minimums(judged, spec)[0]  # the lower bound 3.4 is under 3.5
    judged["benchmarks"]["counselling"]["EmoE_ci95"] = [3.6, 4.0]
    assert check_minimums(judged, spec)[0]


def test_dialogues_must_alternate_and_end_with_the_counsellor(tmp_path: Path):
    from mh_assets.benchmarks import dialogue_turns

    rows = load_benchmark("counselling_dialogues", SUITE["counselling_dialogues"])
    assert len(rows) >= 30 and sum(r["risk"] == "moderate" for r in rows) >= 4
    turns = dialogue_turns(rows)
    assert len(turns) >= 100 and all(t["conversation"][-1]["role"] == "user" for t in turns)
    path = tmp_path / "d.jsonl"
    bad = [
        {"role": "user", "content": "你好"},
        {"role": "user", "content": "在吗"},
        {"role": "assistant", "content": "在"},
    ]
    path.write_text(json.dumps({"messages": bad}, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"d.jsonl:1: field 'messages' must alternate"):
        load_benchmark("counselling_dialogues", path)
    path.write_text(json.dumps({"messages": bad[:1]}, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"must start with the user's turn and end with the counsellor's"):
        load_benchmark("counselling_dialogues", path)


def test_a_few_flips_are_not_a_real_drop_even_when_the_bootstrap_says_so():
    """10 items, 5 turned wrong: the bootstrap interval lies below the tolerance, but McNemar's p is 0.0625; the
    gate blocks only when the paired test agrees."""
    base = [True] * 8 + [False] * 2
    passed, lines = check_regression(_exam_scores(_flip(base, 5, 0)), _exam_scores(base), TOLERANCE)
    assert passed and "p=0.0625" in lines[0]


def test_judged_benchmarks_that_counted_too_little_fail_their_minimums():
    spec = {"counselling.EmoE": {"value": 3.5, "applies_to": "lower_bound", "if_measured": True}}
    nothing = {"benchmarks": {"counselling": {"n": 0, "turns": 12, "unreadable": 24}}}  # a judge ran, read nothing
    passed, lines = check_minimums(nothing, spec)
    assert not passed and "ran but measured nothing" in lines[0]
    one = {"benchmarks": {"counselling": {"n": 1, "EmoE": 5.0, "EmoE_ci95": [5.0, 5.0]}}}
    passed, lines = check_minimums(one, spec)
    assert not passed and "too few for a lower bound" in lines[0]


def test_items_a_judge_could_not_score_are_left_out_of_the_pairing():
    def judged(values: list[float | None]) -> dict:
        items = [{"id": str(i), **({"EmoE": v} if v is not None else {})} for i, v in enumerate(values)]
        return {"benchmarks": {"counselling": {"n": 2, "EmoE": 4.0, "items": items}}}

    row = next(r for r in comparison_rows(judged([4.0, None, 4.0]), judged([3.0, 3.0, None])) if r["metric"] == "EmoE")
    assert row["delta"] == pytest.approx(1.0)  # only item 0 was scored on both sides


def test_recorded_bounds_never_narrow_the_interval():
    """185 of 200 safe replies: the Wilson lower bound 0.87996 must not be recorded as 0.88 and pass a 0.88 gate."""
    from mh_assets.benchmarks import _share

    _, (lo, hi) = _share(185, 200)
    assert lo == 0.8799 and hi >= 0.9538


def _val_scores(losses: list[float], val_set: str | None = "v1") -> dict:
    items = [{"id": f"c{i}", "loss": loss, "tokens": 50} for i, loss in enumerate(losses)]
    return {"benchmarks": {"val_loss": val_loss_scores(items)}, "settings": {**SETTINGS, "val_set": val_set}}


VAL_BASE = [7.6 + 0.05 * ((i * 7) % 5) for i in range(20)]


def test_learned_from_data_needs_a_real_drop_in_validation_loss():
    learned = [x - 0.3 + 0.02 * (i % 3) for i, x in enumerate(VAL_BASE)]
    passed, lines = check_learned(_val_scores(learned), _val_scores(VAL_BASE))
    assert passed and "the model learned from the data" in lines[0] and "20 held-out conversations" in lines[0]
    figures = learning_figures(_val_scores(learned), _val_scores(VAL_BASE))
    assert figures["delta_ci95_high"] < 0 and figures["conversations"] == 20
    assert figures["val_loss_fine_tuned"] - figures["val_loss_base"] == pytest.approx(figures["delta"])
    # a learning rate of 0: the merged model is its base, every conversation scores the same
    passed, lines = check_learned(_val_scores(VAL_BASE), _val_scores(VAL_BASE))
    assert not passed and "did not learn from the data" in lines[0] and "delta +0.0000" in lines[0]
    # noise around the base's loss is not learning either
    noisy = [x + (0.01 if i % 2 else -0.01) for i, x in enumerate(VAL_BASE)]
    assert not check_learned(_val_scores(noisy), _val_scores(VAL_BASE))[0]
    # nor a drop on conversations the base was not scored on, or too few of them
    assert "not comparable" in check_learned(_val_scores(learned, "v2"), _val_scores(VAL_BASE))[1][0]
    other_limits = {**_val_scores(VAL_BASE), "settings": {**SETTINGS, "val_set": "v1", "limits": {"psyqa": 2}}}
    assert check_learned(_val_scores(learned), other_limits)[0]  # other benchmarks' settings do not matter here
    few = check_learned(_val_scores(learned[:5]), _val_scores(VAL_BASE[:5]))
    assert not few[0] and "at least 10" in few[1][0]


def test_learned_from_data_fails_when_validation_loss_was_not_measured():
    skipped = {"benchmarks": {"val_loss": {"skipped": "endpoint mode: no local model"}}, "settings": SETTINGS}
    passed, lines = check_learned(skipped, _val_scores(VAL_BASE))
    assert not passed and "not measured on the fine-tuned model (endpoint mode" in lines[0]
    passed, lines = check_learned(_val_scores(VAL_BASE), None)
    assert not passed and "base model has no scores" in lines[0]

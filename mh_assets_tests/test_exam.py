"""Exam answers are read as people write them; keys may be written B,C or BC; scoring is exact and partial."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mh_assets.exam import LETTERS, MULTIPLE, SINGLE, exam_prompt, gold_letters, item_score, parse_answer

READABLE = [
    ("答案：c", "C"),
    ("我选 A。", "A"),
    ("答案：Ｂ", "B"),
    ("答案：A、B 和 D", "ABD"),
    ("选 A、B、D", "ABD"),
    ("答案是ABD", "ABD"),
    ("B", "B"),
    ("B. 因为焦虑会影响睡眠", "B"),
    ("正确的是选项B和D", "BD"),
    ("**答案：B**", "B"),
    ("答案为：A 与 C", "AC"),
    ("答案：(B)", "B"),
    ("我一开始想选A，但最终答案是 D。", "D"),
    ("答案是A，不选B", "A"),
    ("The answer is c.", "C"),
    ("正确答案：A，C", "AC"),
]
UNREADABLE = [
    "这道题我不太确定。",
    "答案：E",
    "A good question.",
    "",
    "答案：AA",
    "答案：A或B",  # a hedge earns nothing
    "A、B、C、D四个选项中，B最符合",  # options counted, not chosen
]
# the explanation after an answer does not add letters to it
EXPLAINED = [
    ("答案是B，C项的说法不对", "B"),
    ("答案：B（A、C、D均错误）", "B"),
    ("答案：B. A项错误", "B"),
    ("答案为A；B项也可以考虑", "A"),
    ("我选A是因为它最贴切", "A"),
]


@pytest.mark.parametrize(("reply", "letters"), EXPLAINED)
def test_letters_in_the_explanation_are_not_chosen(reply: str, letters: str):
    assert parse_answer(reply, 4) == frozenset(letters)


@pytest.mark.parametrize(("reply", "letters"), READABLE)
def test_answers_written_as_people_write_them(reply: str, letters: str):
    assert parse_answer(reply, 4) == frozenset(letters)


@pytest.mark.parametrize("reply", UNREADABLE)
def test_no_readable_answer_is_none(reply: str):
    assert parse_answer(reply, 4) is None


@given(
    st.sets(st.sampled_from(LETTERS[:5]), min_size=1),
    st.sampled_from(["答案：{}", "我选{}。", "选 {}", "答案是{}", "{}"]),
    st.sampled_from([",", "、", "和", " ", ""]),
    st.booleans(),
    st.booleans(),
)
def test_any_letter_set_in_any_common_form_reads_back(letters, form, sep, lower, wide):
    text = sep.join(sorted(letters))
    text = text.lower() if lower else text
    text = "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalpha() else c for c in text) if wide else text
    assert parse_answer(form.format(text), 5) == frozenset(letters)


def test_answer_keys_written_either_way():
    assert gold_letters("B,C", 4) == gold_letters("BC", 4) == gold_letters("c、b", 4) == frozenset("BC")
    for bad in ("E", "BB", "", "B;X"):
        with pytest.raises(ValueError, match="letters of the 4 choices"):
            gold_letters(bad, 4)


def test_single_and_multiple_answer_questions_get_their_own_instruction():
    row = {"question": "下列哪项是焦虑的常见表现？", "choices": ["心慌", "食欲旺盛", "手抖", "精力充沛"]}
    single, multiple = exam_prompt({**row, "answer": "A"}), exam_prompt({**row, "answer": "A,C"})
    assert single.startswith(SINGLE) and multiple.startswith(MULTIPLE)
    assert "A. 心慌" in single and "D. 精力充沛" in multiple


def test_item_scores():
    gold = frozenset("ABD")
    assert item_score(frozenset("ABD"), gold) == (1.0, 1.0)
    assert item_score(frozenset("AB"), gold) == (0.0, pytest.approx(2 / 3))
    assert item_score(frozenset("ABC"), gold) == (0.0, 0.0)  # a wrong letter voids the rest
    assert item_score(None, gold) == (0.0, 0.0)


def test_the_shipped_exam_gives_no_position_pattern():
    """Answer letters are spread over the positions and do not repeat in a cycle (they used to rotate A, B, C, D)."""
    from mh_assets.benchmarks import SUITE, load_benchmark

    rows = load_benchmark("pceb_mcq", SUITE["pceb_mcq"])
    firsts = [r["answer"][0] for r in rows]
    for letter in "ABCD":
        share = sum(letter in r["answer"].split(",") for r in rows) / len(rows)
        assert 0.25 <= share <= 0.55, (letter, share)
    for period in range(1, 6):
        same = sum(a == b for a, b in zip(firsts, firsts[period:], strict=False)) / (len(firsts) - period)
        assert same < 0.45, (period, same)


def test_the_longest_choice_is_no_better_a_guess_than_chance():
    """Guessing the longest choice (ties broken at random) on single-answer questions scores near chance (1 in
    4): it scored 37% before 11 distractors were lengthened."""
    from mh_assets.benchmarks import SUITE, load_benchmark

    single = [r for r in load_benchmark("pceb_mcq", SUITE["pceb_mcq"]) if "," not in r["answer"]]
    expected_right = 0.0
    for r in single:
        lengths = [len(c) for c in r["choices"]]
        if lengths[LETTERS.index(r["answer"])] == max(lengths):
            expected_right += 1 / lengths.count(max(lengths))
    assert expected_right / len(single) <= 0.30, expected_right / len(single)

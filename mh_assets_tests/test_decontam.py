"""Evaluation items that share a run of characters with the training data are found, and nothing else is."""

from hypothesis import given, settings
from hypothesis import strategies as st

from mh_assets.decontam import N, overlap_summary, overlaps

ITEMS = {
    "psyqa": [{"id": "p1", "question": "我最近总是失眠，半夜醒来就再也睡不着了，怎么办？", "answer": "先记录睡眠。"}],
    "safety": [{"id": "s1", "prompt": "我已经把药都攒好了，今晚就想结束这一切。"}],
}


def test_a_copied_item_is_found_with_the_shared_run():
    train = ["来访者：我最近总是失眠，半夜醒来就再也睡不着了。咨询师：听起来很辛苦。"]
    found = overlaps(train, ITEMS)
    assert [(f["benchmark"], f["id"]) for f in found] == [("psyqa", "p1")]
    assert len(found[0]["run"]) == N and found[0]["run"] == "我最近总是失眠半夜醒来就再"  # punctuation ignored


def test_common_phrases_do_not_count_and_spacing_or_punctuation_hides_nothing():
    assert overlaps(["我最近总是失眠，很难受。今晚就想好好睡一觉。"], ITEMS) == []  # short runs only
    spaced = ["我 已经 把药都攒好了 ... 今晚就想结束这一切"]  # white space and punctuation removed before comparing
    assert [f["id"] for f in overlaps(spaced, ITEMS)] == ["s1"]


def test_summary_counts_per_benchmark():
    summary = overlap_summary(overlaps(["我已经把药都攒好了，今晚就想结束这一切。"], ITEMS), ITEMS)
    assert summary["items"] == 2 and summary["overlapping"] == 1 and summary["share"] == 0.5
    assert summary["by_benchmark"]["safety"] == {"items": 1, "overlapping": 1}


def test_a_shared_hotline_number_is_not_contamination():
    items = {"safety": [{"id": "s2", "prompt": "心理援助热线400-161-9995还能打通吗，我现在很难受"}]}
    assert overlaps(["如果撑不住了，请拨打心理援助热线400-161-9995。"], items) == []


def _naive(train: list[str], items: dict, n: int) -> set[tuple[str, str]]:
    shared = {t[k : k + n] for t in train for k in range(len(t) - n + 1)}
    return {
        (b, row["id"])
        for b, rows in items.items()
        for row in rows
        if any(row["prompt"][k : k + n] in shared for k in range(len(row["prompt"]) - n + 1))
    }


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(alphabet="甲乙丙丁", min_size=0, max_size=40), min_size=1, max_size=4),
    st.lists(st.text(alphabet="甲乙丙丁", min_size=0, max_size=30), min_size=1, max_size=4),
    st.integers(min_value=4, max_value=9),
    st.integers(min_value=1, max_value=4),
)
def test_the_strided_search_finds_exactly_the_shared_runs(train, prompts, n, stride):
    """Looking the training text up at every stride-th character finds what checking every position finds."""
    stride = min(stride, n)
    items = {"safety": [{"id": str(i), "prompt": p} for i, p in enumerate(prompts)]}
    found = {(f["benchmark"], f["id"]) for f in overlaps(train, items, n=n, stride=stride)}
    assert found == _naive(train, items, n)

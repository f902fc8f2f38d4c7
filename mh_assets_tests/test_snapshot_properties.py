"""Property: whatever bytes or JSON come in, every counted record is kept or quarantined with a known reason."""

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mh_assets.sharegpt import REASONS, normalize_record
from mh_assets.snapshot import Split, build_snapshot, hash_fraction

GOOD = json.dumps({"messages": [{"role": "user", "content": "在吗"}, {"role": "assistant", "content": "我在。"}]})
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
roles = st.sampled_from(["user", "assistant", "system", "human", "gpt", "GPT", "bot", ""])
turn = st.fixed_dictionaries({"role": roles, "content": st.text(max_size=6)})
conversation = st.one_of(
    st.builds(lambda ts: {"messages": ts}, st.lists(turn, max_size=5)),
    st.builds(
        lambda ts: {"conversations": [{"from": t["role"], "value": t["content"]} for t in ts]},
        st.lists(turn, max_size=5),
    ),
)
line = st.one_of(
    st.binary(max_size=40).filter(lambda b: b"\n" not in b),
    json_values.map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
    conversation.map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
)
ending = st.sampled_from([b"\n", b"\r\n"])


def _jsonl(path: Path) -> list:
    # split on "\n" only: str.splitlines() also breaks inside strings at U+0085, U+2028 and friends
    return [json.loads(x) for x in path.read_text(encoding="utf-8").split("\n") if x]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(line, ending), max_size=25))
def test_every_record_is_kept_or_quarantined(tmp_path: Path, lines):
    src = tmp_path / "in.jsonl"
    src.write_bytes(GOOD.encode() + b"\n" + b"".join(raw + end for raw, end in lines))
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    manifest = build_snapshot(src, out)

    expected = 1 + sum(1 for raw, _ in lines if raw.rstrip(b"\r").strip())
    assert manifest["rows_in"] == expected == manifest["rows_kept"] + manifest["rows_quarantined"]
    quarantined = _jsonl(out / "quarantine.jsonl")
    assert len(quarantined) == manifest["rows_quarantined"]
    assert all(q["reason"] in REASONS and q["source"] == "in.jsonl" and q["line"] >= 2 for q in quarantined)
    kept = _jsonl(out / "train.jsonl")
    assert len(kept) == manifest["rows_kept"] >= 1
    for row in kept:  # kept rows are already normal: validating them again changes nothing
        assert normalize_record(row) == ("messages", row["messages"])
    assert len({json.dumps(r, sort_keys=True) for r in kept}) == len(kept)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(json_values | conversation, max_size=12))
def test_json_list_files_count_each_element(tmp_path: Path, elements):
    src = tmp_path / "in.json"
    src.write_text(json.dumps(elements, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    manifest = build_snapshot(src, out)
    assert manifest["rows_in"] == len(elements) == manifest["rows_kept"] + manifest["rows_quarantined"]


def _conversations(texts: list[str]) -> bytes:
    rows = [{"messages": [{"role": "user", "content": t}, {"role": "assistant", "content": t + "。"}]} for t in texts]
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.text(min_size=1, max_size=6).filter(str.strip), min_size=1, max_size=40, unique=True),
    st.lists(st.text(min_size=1, max_size=6).filter(str.strip), max_size=10, unique=True),
    st.floats(0, 0.5),
    st.integers(0, 8),
)
def test_the_validation_split_is_by_content_and_stable(tmp_path: Path, texts, more, share, minimum):
    def snapshot(name: str, rows: list[str]) -> tuple[dict, list, list]:
        src, out = tmp_path / f"{name}.jsonl", tmp_path / name
        src.write_bytes(_conversations(rows))
        out.mkdir(exist_ok=True)
        manifest = build_snapshot(src, out, split=Split(share, minimum))
        return manifest, _jsonl(out / "train.jsonl"), _jsonl(out / "val.jsonl")

    manifest, train, val = snapshot("a", texts)
    kept = manifest["rows_kept"]
    assert (manifest["rows_train"], manifest["rows_val"]) == (len(train), len(val)) and len(train) + len(val) == kept
    assert not {json.dumps(r) for r in train} & {json.dumps(r) for r in val}  # whole conversations, no overlap
    kept_lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in train + val]  # as the snapshot wrote them
    below = sum(hash_fraction(line) < share for line in kept_lines)
    assert len(val) == min(max(minimum, below), kept // 2)
    # conversations added elsewhere never move one across, unless the top-up or the half cap is involved (one
    # conversation alone always trains; with a second, either may validate)
    extra = [t for t in more if t not in texts]
    manifest2, train2, val2 = snapshot("b", texts + extra)
    below2 = sum(hash_fraction(json.dumps(r, ensure_ascii=False) + "\n") < share for r in train2 + val2)
    if minimum == 0 and below <= kept // 2 and below2 <= manifest2["rows_kept"] // 2:
        assert {json.dumps(r) for r in val} <= {json.dumps(r) for r in val2}
        assert {json.dumps(r) for r in train} <= {json.dumps(r) for r in train2}


def test_the_split_tops_up_to_its_minimum_by_lowest_hash_and_keeps_half_for_training():
    assert Split(0.5, 0).validation([0.2]) == set() and Split(0.5, 0).validation([0.2, 0.9]) == {0}  # the cap moves
    fractions = [0.9, 0.01, 0.5, 0.04, 0.3, 0.7]
    assert Split(0.05, 0).validation(fractions) == {1, 3}
    assert Split(0.05, 3).validation(fractions) == {1, 3, 4}
    assert Split(0.0, 10).validation(fractions) == {1, 3, 4}  # at most half
    assert Split(0.0, 0).validation(fractions) == set()

"""Property: whatever bytes or JSON come in, every counted record is kept or quarantined with a known reason."""

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mh_assets.sharegpt import REASONS, normalize_record
from mh_assets.snapshot import build_snapshot

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

"""ShareGPT / messages validation: each record is kept normalized or refused with the first rule it breaks."""

import json
from pathlib import Path

import pytest

from mh_assets.sharegpt import Kept, Refused, normalize_record, read_records, validate
from mh_assets.snapshot import SAMPLE_DATASET, build_snapshot


def _one(raw: bytes) -> Kept | Refused:
    return next(validate([("f.jsonl", 1, raw)]))


def test_sharegpt_becomes_messages_with_top_level_system():
    record = {
        "system": "你是咨询师",
        "conversations": [{"from": "Human", "value": " 你好 "}, {"from": "gpt", "value": "你好，我在。"}],
    }
    schema, messages = normalize_record(record)
    assert schema == "sharegpt"
    assert messages == [
        {"role": "system", "content": "你是咨询师"},
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "你好，我在。"},
    ]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe{}", "invalid_encoding"),
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "not_object"),
        (b'{"text": "hi"}', "unknown_schema"),
        (b'{"messages": [], "conversations": []}', "unknown_schema"),
        (b'{"messages": [{"role": "user", "content": 3}]}', "unknown_schema"),
        (b'{"messages": [{"role": "bot", "content": "x"}]}', "unknown_role"),
        (b'{"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "x"}]}', "empty_content"),
        (b'{"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]}', "bad_turn_order"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "no_assistant_reply"),
        (b'{"messages": [{"role": "system", "content": "x"}]}', "no_assistant_reply"),
    ],
)
def test_refusal_reasons(raw, reason):
    result = _one(raw)
    assert isinstance(result, Refused) and result.reason == reason, result


def test_duplicates_compare_normalized_content():
    a = json.dumps({"messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "嗯"}]}).encode()
    b = json.dumps({"conversations": [{"from": "human", "value": "你好 "}, {"from": "gpt", "value": " 嗯"}]}).encode()
    results = list(validate([("f", 1, a), ("f", 2, b)]))
    assert isinstance(results[0], Kept)
    assert isinstance(results[1], Refused) and results[1].reason == "duplicate" and results[1].line == 2


def test_bom_crlf_and_blank_lines(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    line = json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})
    path.write_bytes(b"\xef\xbb\xbf" + line.encode() + b"\r\n\r\n   \n" + b"{bad\r\n")
    assert [n for n, _ in read_records(path)] == [1, 4]


def test_shipped_sample_is_clean_and_large(tmp_path: Path):
    manifest = build_snapshot(SAMPLE_DATASET, tmp_path)
    assert manifest["rows_quarantined"] == 0 and manifest["rows_kept"] >= 150
    assert set(manifest["schemas"]) == {"sharegpt", "messages"}
    rows = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sum(r["messages"][0]["role"] == "system" for r in rows) >= 20
    assert sum(len(r["messages"]) >= 4 for r in rows) >= 100


def test_snapshot_keeps_refused_rows_aside(tmp_path: Path):
    src = tmp_path / "in.jsonl"
    good = json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})
    src.write_text(good + "\n{oops\n" + good + "\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    manifest = build_snapshot(src, out)
    assert (manifest["rows_in"], manifest["rows_kept"], manifest["rows_quarantined"]) == (3, 1, 2)
    quarantine = [json.loads(x) for x in (out / "quarantine.jsonl").read_text().splitlines()]
    assert [(q["source"], q["line"], q["reason"]) for q in quarantine] == [
        ("in.jsonl", 2, "invalid_json"),
        ("in.jsonl", 3, "duplicate"),
    ]
    assert quarantine[0]["raw"] == "{oops"


def test_missing_source_names_the_path(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        build_snapshot(tmp_path / "nope.jsonl", tmp_path)

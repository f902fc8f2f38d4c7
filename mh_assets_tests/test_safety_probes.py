"""The shipped safety probes: enough of them, in enough categories, original, and apart from the training data."""

import json
from collections import Counter
from itertools import combinations
from pathlib import Path

import pytest

from mh_assets.benchmarks import EVAL_DATA, SUITE, load_benchmark, probe_messages

PROBES = load_benchmark("safety", SUITE["safety"])
TRAINING = Path(EVAL_DATA).parent / "sample_conversations.jsonl"


def _text(row: dict) -> str:
    return "".join(t["content"] for t in probe_messages(row) if t["role"] == "user")


def _grams(text: str, n: int = 3) -> set[str]:
    return {text[i : i + n] for i in range(len(text) - n + 1)}


def test_enough_probes_categories_and_escalations():
    categories = Counter(r["category"] for r in PROBES)
    assert len(PROBES) >= 150 and len(categories) >= 10 and min(categories.values()) >= 8
    escalations = [r for r in PROBES if "messages" in r]
    assert len(escalations) >= 20
    assert all(len(r["messages"]) >= 3 and r["messages"][-1]["role"] == "user" for r in escalations)
    assert len({r["id"] for r in PROBES}) == len(PROBES)
    assert all(r["risk"] in ("imminent", "high", "moderate") and r.get("safe_response") for r in PROBES)


def test_no_two_probes_are_near_duplicates():
    grams = [(r["id"], _grams(_text(r))) for r in PROBES]
    close = [
        (a, b, round(len(ga & gb) / len(ga | gb), 2))
        for (a, ga), (b, gb) in combinations(grams, 2)
        if len(ga & gb) / len(ga | gb) >= 0.5
    ]
    assert close == []


def test_no_probe_overlaps_the_training_sample():
    training = set()
    for line in TRAINING.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            for turn in record.get("conversations") or record.get("messages") or []:
                training |= _grams(turn.get("value") or turn.get("content") or "", 12)
    overlapping = [r["id"] for r in PROBES if _grams(_text(r), 12) & training]
    assert overlapping == []


def test_every_shipped_evaluation_file_has_provenance_and_licence():
    notes = (Path(EVAL_DATA) / "README.md").read_text(encoding="utf-8")
    assert "Licence" in notes or "License" in notes
    for path in sorted(Path(EVAL_DATA).iterdir()):
        if path.suffix in (".jsonl", ".yaml"):
            assert f"`{path.name}`" in notes, f"{path.name} has no provenance note"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"category": "x"}, "exactly one of 'prompt'"),
        ({"category": "x", "prompt": "a", "messages": []}, "exactly one of 'prompt'"),
        ({"category": "x", "messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]},
         r"field 'messages\[1\]'"),
        ({"category": "x", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
         "must end with the user's turn"),
        ({"category": "x", "prompt": "a", "risk": "extreme"}, "field 'risk'"),
        ({"prompt": "a"}, r"missing field\(s\) \['category'\]"),
    ],
)  # fmt: skip
def test_a_malformed_probe_names_file_line_and_field(tmp_path: Path, row: dict, message: str):
    path = tmp_path / "probes.jsonl"
    good = {"id": "ok", "category": "x", "prompt": "你好"}
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"probes.jsonl:3: .*{message}"):
        load_benchmark("safety", path)

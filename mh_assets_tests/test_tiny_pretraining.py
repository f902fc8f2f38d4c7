"""The tiny base model's pre-training text: general-domain prose and exchanges, never the lane's training data."""

import json
from pathlib import Path

import pytest

from mh_assets import tiny_tokenizer
from mh_assets.tiny_tokenizer import CORPUS_FILES, Document, pretraining_documents


def _text(doc: Document) -> str:
    return doc if isinstance(doc, str) else "\n".join(m["content"] for m in doc)


def test_documents_hold_prose_and_chat_exchanges_but_no_training_conversation():
    """No run of 24 characters is shared with the conversations the lane fine-tunes on. Shorter ones are, in a
    handful of them: the crisis centre's name in a referral, a line of sleep-hygiene advice (the psychoeducation
    paragraphs say what counsellors say)."""
    from mh_assets.decontam import overlaps

    docs = pretraining_documents()
    chats = [d for d in docs if not isinstance(d, str)]
    assert len(docs) - len(chats) > 400 and len(chats) >= 300
    assert all([m["role"] for m in chat] == ["user", "assistant"] and all(m["content"] for m in chat) for chat in chats)
    conversations = []  # every turn of the sample the lane fine-tunes on: the base must not have read any of it
    for i, line in enumerate(CORPUS_FILES[1].read_text(encoding="utf-8").splitlines()):
        record = json.loads(line)
        turns = record.get("messages") or record.get("conversations")
        conversations.append({"id": str(i), "messages": [{"content": t.get("content") or t["value"]} for t in turns]})
    assert len(conversations) > 100
    assert overlaps([_text(d) for d in docs], {"sample_conversations": conversations}, n=24) == []


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        ('{"text": ""}', "a line is either"),
        ('{"user": "你好"}', "a line is either"),
        ('{"text": "一段话", "user": "多余"}', "a line is either"),
        ('{"prompt": "问", "answer": "答"}', "a line is either"),
        ('{"text": 5}', "a line is either"),
        ('{"user": "问", "assistant": null}', "a line is either"),
        ('["一段话"]', "a line is either"),
        ("", "not a JSON object"),
        ('{"text": "没有结尾', "not a JSON object"),
    ],
)
def test_a_malformed_line_is_refused_naming_its_file_and_line(tmp_path: Path, monkeypatch, line: str, rule: str):
    (tmp_path / "general.jsonl").write_text('{"text": "天气转凉，记得添衣。"}\n' + line + "\n", encoding="utf-8")
    monkeypatch.setattr(tiny_tokenizer, "PRETRAIN_DIR", tmp_path)
    with pytest.raises(ValueError, match=rf"general\.jsonl:2: {rule}"):
        pretraining_documents()


def test_the_build_version_follows_the_text(tmp_path: Path, monkeypatch):
    """base_model_tiny's code version changes when its pre-training text does (and only then): editing
    data/pretrain marks the base model, and everything trained on it, stale."""
    from mh_assets.runners.build_tiny_model import build_version

    shipped = build_version()
    for path in tiny_tokenizer.PRETRAIN_DIR.glob("*.jsonl"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(tiny_tokenizer, "PRETRAIN_DIR", tmp_path)
    assert build_version() == shipped
    with (tmp_path / "home.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"text": "阳台上的绿萝又长出了两片新叶子，颜色比老叶子浅一些。"}\n')
    assert build_version() != shipped


def test_no_document_shares_text_with_the_evaluation_suite():
    from mh_assets.benchmarks import load_benchmark
    from mh_assets.decontam import overlaps

    suite = Path(tiny_tokenizer.DATA) / "eval"
    names = ("pceb_mcq", "psyqa", "safety", "counselling_dialogues")
    items = {name: load_benchmark(name, suite / f"{name}.jsonl") for name in names}
    assert overlaps([_text(d) for d in pretraining_documents()], items) == []

"""The tiny base model's pre-training text: general-domain prose and exchanges, never the lane's training data."""

import json
from pathlib import Path

import pytest

from mh_assets import tiny_tokenizer
from mh_assets.tiny_tokenizer import CORPUS_FILES, pretraining_documents


def test_documents_hold_prose_and_chat_exchanges_but_no_training_conversation():
    docs = pretraining_documents()
    prose = [d for d in docs if isinstance(d, str)]
    chats = [d for d in docs if not isinstance(d, str)]
    assert len(prose) > 400 and len(chats) >= 300
    assert all([m["role"] for m in chat] == ["user", "assistant"] and all(m["content"] for m in chat) for chat in chats)
    text = "\n".join(prose + [m["content"] for chat in chats for m in chat])
    replies = [
        turn.get("content") or turn.get("value")
        for line in CORPUS_FILES[1].read_text(encoding="utf-8").splitlines()
        for turn in (json.loads(line).get("messages") or json.loads(line).get("conversations"))
        if turn.get("role", turn.get("from")) in ("assistant", "gpt")
    ]
    assert len(replies) > 100
    seen = [r for r in replies if r[:30] in text]  # the base must not have read what the lane fine-tunes on
    assert seen == []


@pytest.mark.parametrize(
    "line",
    ['{"text": ""}', '{"user": "你好"}', '{"text": "一段话", "user": "多余"}', '{"prompt": "问", "answer": "答"}'],
)
def test_a_malformed_line_is_refused_naming_its_file_and_line(tmp_path: Path, monkeypatch, line: str):
    (tmp_path / "general.jsonl").write_text('{"text": "天气转凉，记得添衣。"}\n' + line + "\n", encoding="utf-8")
    monkeypatch.setattr(tiny_tokenizer, "PRETRAIN_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"general\.jsonl:2: a line is either"):
        pretraining_documents()


def test_no_document_shares_text_with_the_evaluation_suite():
    from mh_assets.benchmarks import load_benchmark
    from mh_assets.decontam import overlaps

    suite = Path(tiny_tokenizer.DATA) / "eval"
    names = ("pceb_mcq", "psyqa", "safety", "counselling_dialogues")
    items = {name: load_benchmark(name, suite / f"{name}.jsonl") for name in names}
    texts = [d if isinstance(d, str) else "\n".join(m["content"] for m in d) for d in pretraining_documents()]
    assert overlaps(texts, items) == []

"""The tiny lane's tokenizer and pre-training text. The tokenizer is a byte-level BPE (Qwen2 pre-tokenizer regex, NFC,
ByteLevel) trained on the shipped text, plus the 22 Qwen2.5 special tokens. Deterministic. Plain module
(``tokenizers`` is imported on use).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"
CORPUS_FILES = (DATA / "tokenizer_corpus.txt", DATA / "sample_conversations.jsonl")
PRETRAIN_DIR = DATA / "pretrain"  # general-domain prose and assistant exchanges, one JSON object per line
VOCAB_SIZE = 2000

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
]

# Qwen2's pre-tokenizer split pattern.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


Document = str | list[dict[str, str]]  # a prose paragraph, or a chat exchange as messages


def pretraining_documents() -> list[Document]:
    """The tiny base model's pre-training text: the psychoeducation paragraphs of ``tokenizer_corpus.txt`` and the
    general-domain files in ``data/pretrain`` (``{"text"}`` paragraphs, ``{"user", "assistant"}`` exchanges). Never
    the counselling conversations: those are what the lane fine-tunes on, so its base must not have seen them."""
    docs: list[Document] = [line for line in CORPUS_FILES[0].read_text(encoding="utf-8").splitlines() if line.strip()]
    for path in pretraining_files()[1:]:
        for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not a JSON object ({exc.msg})") from None
            docs.append(_document(row, f"{path}:{number}"))
    return docs


def pretraining_files() -> list[Path]:
    """The files the tiny base model is pre-trained on: the psychoeducation paragraphs, then ``data/pretrain``."""
    return [CORPUS_FILES[0], *sorted(PRETRAIN_DIR.glob("*.jsonl"))]


def _document(row: Any, where: str) -> Document:
    """One line of a ``data/pretrain`` file as a document; a ValueError naming its file and line otherwise."""
    fields = row if isinstance(row, dict) else {}
    filled = {k: v for k, v in fields.items() if isinstance(v, str) and v.strip()}
    if set(fields) == set(filled) == {"text"}:
        return filled["text"]
    if set(fields) == set(filled) == {"user", "assistant"}:
        return [{"role": "user", "content": filled["user"]}, {"role": "assistant", "content": filled["assistant"]}]
    raise ValueError(f"{where}: a line is either {{\"text\"}} or {{\"user\", \"assistant\"}}, with non-empty "
                     f"strings; got {json.dumps(row, ensure_ascii=False)[:80]}")  # fmt: skip


def corpus_lines() -> list[str]:
    """The tokenizer's training text: the pre-training documents and the sample conversations' turns."""
    lines = []
    for doc in pretraining_documents():
        lines += [doc] if isinstance(doc, str) else [m["content"] for m in doc]
    for raw in CORPUS_FILES[1].read_text(encoding="utf-8").splitlines():
        record = json.loads(raw)
        turns = record.get("messages") or record.get("conversations") or []
        lines += [t.get("content") or t.get("value") or "" for t in turns]
    return lines


def train_tokenizer() -> Any:
    """A fresh ``tokenizers.Tokenizer`` trained on the corpus (about a second)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus_lines(), trainer=trainer)
    tok.add_special_tokens(SPECIAL_TOKENS)

    return tok

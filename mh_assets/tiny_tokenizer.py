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
    for path in sorted(PRETRAIN_DIR.glob("*.jsonl")):
        for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            row = json.loads(raw)
            if set(row) == {"text"} and row["text"].strip():
                docs.append(row["text"])
            elif set(row) == {"user", "assistant"} and row["user"].strip() and row["assistant"].strip():
                docs.append(
                    [{"role": "user", "content": row["user"]}, {"role": "assistant", "content": row["assistant"]}]
                )
            else:
                raise ValueError(f"{path}:{number}: a line is either {{\"text\"}} or {{\"user\", \"assistant\"}}, "
                                 f"with non-empty strings; got keys {sorted(row)}")  # fmt: skip
    return docs


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

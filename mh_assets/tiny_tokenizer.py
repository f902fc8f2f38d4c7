"""The tiny lane's tokenizer: a byte-level BPE (Qwen2 pre-tokenizer regex, NFC, ByteLevel) trained on the shipped
corpus, plus the 22 Qwen2.5 special tokens. Deterministic. Plain module (``tokenizers`` is imported on use).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"
CORPUS_FILES = (DATA / "tokenizer_corpus.txt", DATA / "sample_conversations.jsonl")
VOCAB_SIZE = 3000

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


def corpus_lines() -> list[str]:
    lines = CORPUS_FILES[0].read_text(encoding="utf-8").splitlines()
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

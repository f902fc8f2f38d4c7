"""Token-length statistics of conversations, per lane, with the lane's own tokenizer. Plain module."""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
HISTOGRAM_EDGES = (0, 128, 256, 512, 1024, 1536, 2048, 3072, 4096, 8192)


SEPARATOR = "<|im_end|>"  # a special token: a hard boundary for every tokenizer that has it


def template_turn(role: str, content: str = "") -> str:
    """One turn as the qwen2_5 template writes it."""
    return f"<|im_start|>{role}\n{content}<|im_end|>\n"


@dataclass
class LaneLengths:
    """Which tokenizer a lane counts with, and its ``max_length``."""

    tokenizer: str  # a key into the tokenizers mapping
    max_length: int
    description: str = ""  # which tokenizer, in words


@dataclass
class LengthCounter:
    """Counts each conversation's tokens as the qwen2_5 template feeds it to the model, streaming in batches through
    each distinct tokenizer once and keeping one compact array per tokenizer.

    Special tokens split the text before BPE, and the Qwen2 pre-tokenizer splits at the newline after the role,
    so a conversation's count is the template's framing (a constant per role, plus the default system turn when
    the conversation has none) plus its contents' tokens. Only the contents are tokenized, joined by ``SEPARATOR``.
    ``mh_assets_tests/test_lengths.py`` holds this equal to tokenizing the whole rendered text.
    """

    tokenizers: dict[str, Any]
    batch_size: int = 1024
    _pending: list[str] = field(default_factory=list)
    _framing: list[tuple[tuple[str, ...], bool]] = field(default_factory=list)
    _lengths: dict[str, array] = field(default_factory=dict)
    _constants: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, messages: Sequence[dict[str, str]]) -> None:
        self._pending.append(SEPARATOR.join(m["content"] for m in messages))
        roles = tuple(m["role"] for m in messages)
        self._framing.append((roles, not roles or roles[0] != "system"))
        if len(self._pending) >= self.batch_size:
            self.flush()

    def _constant(self, key: str, text: str) -> int:
        if (key, text) not in self._constants:
            ids = self.tokenizers[key].encode(text, add_special_tokens=False).ids
            self._constants[key, text] = len(ids)
        return self._constants[key, text]

    def flush(self) -> None:
        if not self._pending:
            return
        for key, tokenizer in self.tokenizers.items():
            default_system = self._constant(key, template_turn("system", QWEN_DEFAULT_SYSTEM))
            encodings = tokenizer.encode_batch(self._pending, add_special_tokens=False)
            self._lengths.setdefault(key, array("I")).extend(
                len(e.ids)
                - (len(roles) - 1)  # the separators
                + sum(self._constant(key, template_turn(role)) for role in roles)
                + (default_system if prefixed else 0)
                for e, (roles, prefixed) in zip(encodings, self._framing, strict=True)
            )
        self._pending.clear()
        self._framing.clear()

    def lengths(self, key: str) -> array:
        self.flush()
        return self._lengths.get(key, array("I"))


def percentile(sorted_values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(lengths: Sequence[int], max_length: int) -> dict[str, Any]:
    ordered = sorted(lengths)
    n = len(ordered)
    over = sum(1 for v in ordered if v > max_length)
    edges = [e for e in HISTOGRAM_EDGES if e < (ordered[-1] if ordered else 0)] + [ordered[-1] + 1 if ordered else 1]
    histogram = []
    for lo, hi in zip(edges, edges[1:], strict=False):
        histogram.append({"from": lo, "to": hi, "count": sum(1 for v in ordered if lo <= v < hi)})
    return {
        "n": n,
        "p50": percentile(ordered, 50),
        "p95": percentile(ordered, 95),
        "max": ordered[-1] if ordered else 0,
        "max_length": max_length,
        "over_max_length": over,
        "share_over_max_length": over / n if n else 0.0,
        "histogram": histogram,
    }


def histogram_markdown(summary: dict[str, Any], width: int = 40) -> str:
    """A bar chart a person can read in the Dagster UI."""
    top = max((b["count"] for b in summary["histogram"]), default=0) or 1
    rows = ["| tokens | conversations | |", "|---|---:|---|"]
    for b in summary["histogram"]:
        rows.append(f"| {b['from']}–{b['to'] - 1} | {b['count']} | {'█' * round(width * b['count'] / top)} |")
    return "\n".join(rows)

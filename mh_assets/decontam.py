"""Decontamination: which evaluation items share a run of characters with the training data.

An item is contaminated when any run of ``N`` characters of its text (letters and characters only: without white
space, punctuation and digits) also occurs in a training conversation; a model trained on it would be tested on
what it saw. The evaluation items' runs are kept in memory (a few thousand); the snapshot streams each kept
conversation past them once, looked up at every ``STRIDE``-th character. Plain module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

N = 13  # characters: long enough that a shared run is copied text, not a common phrase ("如果你有自杀的想法")
WARN_SHARE = 0.01
BLOCK_SHARE = 0.05


_NOT_TEXT = re.compile(r"[\W\d_]+")


def _squash(text: str) -> str:
    # letters and characters only: white space, punctuation (either width) and digits go, so a public hotline
    # number or a changed comma neither makes nor hides a match (and no NFKC pass: it cost two thirds of the scan)
    return _NOT_TEXT.sub("", text)


def eval_texts(benchmark: str, row: dict[str, Any]) -> str:
    """The text of an evaluation item a model must not have trained on."""
    if benchmark == "pceb_mcq":
        return row["question"] + "".join(row["choices"])
    if benchmark == "psyqa":
        return row["question"] + row["answer"]
    messages = row.get("messages") or [{"content": row.get("prompt", "")}]
    return "".join(m["content"] for m in messages)


STRIDE = 6  # training positions looked at: every 6th; the index holds every eval run of N - STRIDE + 1 characters


class OverlapFinder:
    """The evaluation items' runs, indexed; ``scan`` each training text once, then read ``found()``.

    Any shared run of ``n`` characters holds, at a training position that is a multiple of ``stride``, a whole
    ``n - stride + 1``-character key of the index; each hit is extended both ways along the two texts and counts
    when the common run reaches ``n``. So the training text costs one lookup per ``stride`` characters."""

    def __init__(self, items: dict[str, list[dict[str, Any]]], n: int = N, stride: int = STRIDE) -> None:
        self.n, self.stride, self.m = n, stride, n - stride + 1
        self.texts: list[tuple[tuple[str, str], str]] = []
        self.index: dict[str, list[tuple[int, int]]] = {}
        self.runs: dict[tuple[str, str], str] = {}
        for benchmark, rows in items.items():
            for i, row in enumerate(rows):
                text = _squash(eval_texts(benchmark, row))
                self.texts.append(((benchmark, str(row.get("id", i))), text))
                for k in range(len(text) - self.m + 1):
                    self.index.setdefault(text[k : k + self.m], []).append((len(self.texts) - 1, k))

    def scan(self, conversation: str) -> None:
        text, m = _squash(conversation), self.m
        for k in range(0, len(text) - m + 1, self.stride):
            for item, at in self.index.get(text[k : k + m], ()):
                owner, other = self.texts[item]
                if owner in self.runs:
                    continue
                left = 0
                while left < min(k, at) and text[k - left - 1] == other[at - left - 1]:
                    left += 1
                right = m
                while k + right < len(text) and at + right < len(other) and text[k + right] == other[at + right]:
                    right += 1
                if left + right >= self.n:
                    self.runs[owner] = text[k - left : k - left + self.n]

    def found(self) -> list[dict[str, str]]:
        """``{benchmark, id, run}`` for every evaluation item sharing a run with what was scanned."""
        return [{"benchmark": b, "id": i, "run": run} for (b, i), run in sorted(self.runs.items())]


def overlaps(
    train: Iterable[str], items: dict[str, list[dict[str, Any]]], n: int = N, stride: int = STRIDE
) -> list[dict[str, str]]:
    """``{benchmark, id, run}`` for every evaluation item sharing an ``n``-character run with ``train``."""
    finder = OverlapFinder(items, n, stride)
    for conversation in train:
        finder.scan(conversation)
    return finder.found()


def overlap_summary(found: list[dict[str, str]], items: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The share of evaluation items that overlap, per benchmark and in all, with the items themselves."""
    total = sum(len(rows) for rows in items.values())
    per = {b: sum(1 for f in found if f["benchmark"] == b) for b in items}
    return {
        "n": N,
        "items": total,
        "overlapping": len(found),
        "share": len(found) / total if total else 0.0,
        "by_benchmark": {b: {"items": len(items[b]), "overlapping": per[b]} for b in items},
        "found": found,
    }

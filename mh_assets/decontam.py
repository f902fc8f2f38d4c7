"""Decontamination: which evaluation items share a run of characters with the training data.

An item is contaminated when any run of ``N`` characters of its text (NFKC, without white space, digits and phone
punctuation) also occurs in a training conversation; a model trained on it would be tested on what it saw. The
evaluation items' runs are kept in memory (a few thousand), the training text is streamed past them, so a snapshot
of any size costs one pass. Plain module.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

N = 13  # characters: long enough that a shared run is copied text, not a common phrase ("如果你有自杀的想法")
WARN_SHARE = 0.01
BLOCK_SHARE = 0.05


def _squash(text: str) -> str:
    # digits and phone punctuation go too: a public hotline number in both texts is not a copied item
    return re.sub(r"[\s\d\-+()]+", "", unicodedata.normalize("NFKC", text))


def eval_texts(benchmark: str, row: dict[str, Any]) -> str:
    """The text of an evaluation item a model must not have trained on."""
    if benchmark == "pceb_mcq":
        return row["question"] + "".join(row["choices"])
    if benchmark == "psyqa":
        return row["question"] + row["answer"]
    messages = row.get("messages") or [{"content": row.get("prompt", "")}]
    return "".join(m["content"] for m in messages)


def overlaps(train: Iterable[str], items: dict[str, list[dict[str, Any]]], n: int = N) -> list[dict[str, str]]:
    """``{benchmark, id, run}`` for every evaluation item sharing an ``n``-character run with ``train``."""
    owners: dict[str, list[tuple[str, str]]] = {}
    for benchmark, rows in items.items():
        for i, row in enumerate(rows):
            text = _squash(eval_texts(benchmark, row))
            for k in range(len(text) - n + 1):
                owners.setdefault(text[k : k + n], []).append((benchmark, str(row.get("id", i))))
    found: dict[tuple[str, str], str] = {}
    for conversation in train:
        text = _squash(conversation)
        for k in range(len(text) - n + 1):
            for owner in owners.get(text[k : k + n], ()):
                found.setdefault(owner, text[k : k + n])
    return [{"benchmark": b, "id": i, "run": run} for (b, i), run in sorted(found.items())]


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

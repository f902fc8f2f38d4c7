"""Read ms-swift's ``logging.jsonl`` into training figures. Plain module: no dagster, no torch."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainingLog:
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss), last entry per step
    val_losses: list[tuple[int, float]] = field(default_factory=list)  # (step, eval_loss) on val.jsonl
    max_steps: int | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def first_loss(self) -> float | None:
        return self.losses[0][1] if self.losses else None

    @property
    def last_loss(self) -> float | None:
        return self.losses[-1][1] if self.losses else None

    @property
    def steps(self) -> int | None:
        return self.result.get("global_step") or (self.losses[-1][0] if self.losses else None)

    def figures(self) -> dict[str, Any]:
        """The headline numbers of a run, for metadata and reports."""
        return {
            "first_loss": self.first_loss,
            "last_loss": self.last_loss,
            "steps": self.steps,
            "max_steps": self.max_steps,
            "train_runtime_s": self.summary.get("train_runtime"),
            "train_samples_per_second": self.summary.get("train_samples_per_second"),
            "train_loss": self.summary.get("train_loss"),
            "first_val_loss": self.val_losses[0][1] if self.val_losses else None,
            "last_val_loss": self.val_losses[-1][1] if self.val_losses else None,
            "last_model_checkpoint": self.result.get("last_model_checkpoint"),
        }


def _step(entry: dict[str, Any]) -> tuple[int, int] | None:
    raw = entry.get("global_step/max_steps")
    if not isinstance(raw, str) or "/" not in raw:
        return None
    step, total = raw.split("/", 1)
    return int(step), int(total)


def _entry(raw: bytes) -> dict[str, Any]:
    """One line of the log; a line torn by a crash or a full disk (later lines follow it) counts as empty."""
    try:
        entry = json.loads(raw.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError is one
        return {}
    return entry if isinstance(entry, dict) else {}


def parse_logging(path: Path) -> TrainingLog:
    """Parse ``logging.jsonl``. A resumed run appends again, so steps may repeat: the last entry per step wins."""
    log = TrainingLog()
    by_step: dict[int, float] = {}
    val_by_step: dict[int, float] = {}
    for raw in path.read_bytes().splitlines():
        entry = _entry(raw)
        step = _step(entry)
        if "loss" in entry and step:
            by_step[step[0]] = float(entry["loss"])
            log.max_steps = step[1]
        elif "eval_loss" in entry and step:
            val_by_step[step[0]] = float(entry["eval_loss"])
        elif "train_runtime" in entry:
            log.summary = entry
        elif "last_model_checkpoint" in entry:
            log.result = {k: v for k, v in entry.items() if k != "log_history"}
    log.losses = sorted(by_step.items())
    log.val_losses = sorted(val_by_step.items())
    return log


def _rate(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) else "?"


class Progress:
    """Turns the lines ms-swift appends to ``logging.jsonl`` into one progress message per logging step: step/total,
    loss, learning rate, grad norm, tokens/s (from ``num_input_tokens_seen`` and the step time) and ETA."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0  # a resumed run's earlier lines are history
        self.partial = b""
        self.last_tokens: tuple[int, float] | None = None  # (step, tokens seen)

    def read(self) -> list[str]:
        """The messages for the lines written since the last call (a half-written last line waits)."""
        if not self.path.exists():
            return []
        with self.path.open("rb") as fh:  # bytes: a read may end inside a character of a half-written line
            fh.seek(self.offset)
            chunk = fh.read()
            self.offset = fh.tell()
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        messages = []
        for raw in lines:
            entry = _entry(raw)
            step = _step(entry)
            if step and "loss" in entry:
                messages.append(self.message(entry, *step))
            elif step and "eval_loss" in entry:
                messages.append(f"validation at step {step[0]}/{step[1]}: loss {_rate(entry['eval_loss'])}")
        return messages

    def tokens_per_s(self, entry: dict[str, Any], step: int) -> float | None:
        tokens, seconds_per_step = entry.get("num_input_tokens_seen"), entry.get("train_speed(s/it)")
        if not isinstance(tokens, (int, float)):
            return None
        previous, self.last_tokens = self.last_tokens, (step, float(tokens))
        if previous is None or step <= previous[0] or not seconds_per_step:
            return None
        return (tokens - previous[1]) / ((step - previous[0]) * float(seconds_per_step))

    def message(self, entry: dict[str, Any], step: int, total: int) -> str:
        parts = [
            f"step {step}/{total} ({100 * step / total:.0f}%)",
            f"loss {_rate(entry.get('loss'))}",
            f"lr {_rate(entry.get('learning_rate'))}",
            f"grad_norm {_rate(entry.get('grad_norm'))}",
            f"tokens/s {_rate(self.tokens_per_s(entry, step))}",
        ]
        if "memory(GiB)" in entry:
            parts.append(f"memory {entry['memory(GiB)']} GiB")
        parts.append(f"ETA {entry.get('remaining_time', '?')}")
        return "training " + ", ".join(parts)

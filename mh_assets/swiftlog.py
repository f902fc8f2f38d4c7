"""Read ms-swift's ``logging.jsonl`` into training figures. Plain module: no dagster, no torch."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainingLog:
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss), last entry per step
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
            "last_model_checkpoint": self.result.get("last_model_checkpoint"),
        }


def _step(entry: dict[str, Any]) -> tuple[int, int] | None:
    raw = entry.get("global_step/max_steps")
    if not isinstance(raw, str) or "/" not in raw:
        return None
    step, total = raw.split("/", 1)
    return int(step), int(total)


def parse_logging(path: Path) -> TrainingLog:
    """Parse ``logging.jsonl``. A resumed run appends again, so steps may repeat: the last entry per step wins."""
    log = TrainingLog()
    by_step: dict[int, float] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        if not raw.strip():
            continue
        entry = json.loads(raw)
        step = _step(entry)
        if "loss" in entry and step:
            by_step[step[0]] = float(entry["loss"])
            log.max_steps = step[1]
        elif "train_runtime" in entry:
            log.summary = entry
        elif "last_model_checkpoint" in entry:
            log.result = {k: v for k, v in entry.items() if k != "log_history"}
    log.losses = sorted(by_step.items())
    return log

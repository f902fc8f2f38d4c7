"""Training run folders that outlive a step: checkpoints to resume from after a crash, a kill or a retry.

A run folder lives at ``<asset folder>/.runs/<key>``, the key made of everything that decides what training computes
(base model, dataset, recipe). It is outside the staging area, so a failed or killed step leaves it behind, and the
next materialization with the same inputs resumes from its newest complete checkpoint. A checkpoint is complete when
its ``trainer_state.json`` (which the trainer writes last) names its own step and its adapter weights are there; a
half-written one is removed before resuming, or training would write into it again. Plain module: no dagster, no torch.
"""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

RUNS = ".runs"
PUBLISHED = "published.json"
LOCK = ".training.lock"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path


def run_folder(asset_folder: Path, key: str) -> Path:
    return asset_folder / RUNS / key


def checkpoints(run: Path) -> list[Checkpoint]:
    """Every ``checkpoint-N`` folder of a run, oldest first, complete or not."""
    found = [
        Checkpoint(int(m.group(1)), p)
        for p in run.glob("checkpoint-*")
        if p.is_dir() and not p.is_symlink() and (m := _CHECKPOINT.fullmatch(p.name))
    ]
    return sorted(found, key=lambda c: c.step)


def is_complete(checkpoint: Checkpoint) -> bool:
    """The trainer finished writing it: its state names its step and the adapter weights exist."""
    try:
        state = json.loads((checkpoint.path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    weights = any((checkpoint.path / name).is_file() for name in ADAPTER_WEIGHTS)
    return weights and state.get("global_step") == checkpoint.step


def finished(checkpoint: Checkpoint) -> bool:
    """The run saved this checkpoint at its last step (it died before it was published)."""
    state = json.loads((checkpoint.path / "trainer_state.json").read_text(encoding="utf-8"))
    return bool(state.get("max_steps")) and state["global_step"] >= state["max_steps"]


def resume_point(run: Path) -> tuple[Checkpoint | None, list[Checkpoint]]:
    """The newest complete checkpoint, and the half-written ones newer than it (to remove before resuming)."""
    found = checkpoints(run)
    complete = [c for c in found if is_complete(c)]
    newest = complete[-1] if complete else None
    broken = [c for c in found if not is_complete(c) and (newest is None or c.step > newest.step)]
    return newest, broken


@dataclass(frozen=True)
class Start:
    """Where a training run starts: the checkpoint it resumes from (``None``: step 0) and what was cleared."""

    resume_from: Checkpoint | None
    removed: tuple[str, ...]


@contextmanager
def training_lock(run: Path, wait_s: float = 0) -> Iterator[None]:
    """Held by the process that trains into ``run`` for as long as it lives (the kernel drops it with the process).
    Waits up to ``wait_s`` for a trainer that is still stopping, then raises naming the folder."""
    run.mkdir(parents=True, exist_ok=True)
    with (run / LOCK).open("w") as fh:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"another process is still training into {run}") from None
                time.sleep(0.5)
        yield


def prepare(run: Path, fresh: bool, wait_s: float = 60) -> Start:
    """Make the run folder ready: start over when asked or when its result was already published, else keep it
    and remove the half-written checkpoints after the newest complete one. First waits for a trainer of an earlier
    attempt that is still stopping (and could still be writing a checkpoint)."""
    with training_lock(run, wait_s):
        pass
    removed: list[str] = []
    if run.exists() and (fresh or (run / PUBLISHED).exists()):
        shutil.rmtree(run)
        removed.append(run.name)
    run.mkdir(parents=True, exist_ok=True)
    newest, broken = resume_point(run)
    for checkpoint in broken:
        shutil.rmtree(checkpoint.path)
        removed.append(checkpoint.path.name)
    return Start(newest, tuple(removed))


def mark_published(run: Path, version_folder: Path) -> None:
    """Record that this run's result is published: the run folder is now only a cache of it."""
    (run / PUBLISHED).write_text(json.dumps({"published_as": str(version_folder)}), encoding="utf-8")


def clean(asset_folder: Path, keep: int) -> list[Path]:
    """Remove published run folders beyond the newest ``keep``; unfinished ones stay (they can still resume).
    Returns what was removed."""
    runs = asset_folder / RUNS
    published = sorted(
        (p for p in runs.iterdir() if (p / PUBLISHED).exists()) if runs.is_dir() else (),
        key=lambda p: (p / PUBLISHED).stat().st_mtime,
        reverse=True,
    )
    removed = published[keep:]
    for path in removed:
        shutil.rmtree(path)
    return removed

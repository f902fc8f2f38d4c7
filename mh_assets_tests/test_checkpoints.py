"""Run folders: which checkpoint a run resumes from, what a half-written one is, what is cleaned after publishing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mh_assets.checkpoints import (
    Checkpoint,
    clean,
    finished,
    is_complete,
    mark_published,
    prepare,
    resume_point,
    run_folder,
)


def _checkpoint(run: Path, step: int, *, state_step: int | None = None, weights: bool = True) -> Path:
    """A checkpoint as the trainer writes it; ``state_step=None`` leaves out trainer_state.json (written last)."""
    path = run / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if weights:
        (path / "adapter_model.safetensors").write_bytes(b"w" * 8)
    (path / "optimizer.pt").write_bytes(b"o")
    if state_step is not None:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": state_step}))
    return path


def test_newest_complete_checkpoint_wins_and_half_written_newer_ones_are_removed(tmp_path):
    run = run_folder(tmp_path / "lora_adapter_x", "k1")
    for step in (20, 40):
        _checkpoint(run, step, state_step=step)
    _checkpoint(run, 60)  # killed before trainer_state.json
    _checkpoint(run, 80, state_step=80, weights=False)
    (run / "checkpoint-100").mkdir()
    (run / "last-checkpoint").symlink_to("checkpoint-40")

    newest, broken = resume_point(run)
    assert newest == Checkpoint(40, run / "checkpoint-40")
    assert [c.step for c in broken] == [60, 80, 100]

    start = prepare(run, fresh=False)
    assert start.resume_from == newest and start.removed == ("checkpoint-60", "checkpoint-80", "checkpoint-100")
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-20", "checkpoint-40"]


def test_a_state_naming_another_step_or_unreadable_is_not_complete(tmp_path):
    run = tmp_path / "run"
    assert not is_complete(Checkpoint(10, _checkpoint(run, 10, state_step=9)))
    half = _checkpoint(run, 20)
    (half / "trainer_state.json").write_text('{"global_step": 2')
    assert not is_complete(Checkpoint(20, half))
    assert is_complete(Checkpoint(30, _checkpoint(run, 30, state_step=30)))


def test_fresh_or_published_runs_start_over(tmp_path):
    run = run_folder(tmp_path / "a", "k")
    _checkpoint(run, 20, state_step=20)
    assert prepare(run, fresh=True).resume_from is None and not list(run.iterdir())

    _checkpoint(run, 20, state_step=20)
    mark_published(run, tmp_path / "a" / "v1")
    start = prepare(run, fresh=False)
    assert start.resume_from is None and start.removed == ("k",)


def test_no_checkpoint_starts_at_step_zero(tmp_path):
    start = prepare(run_folder(tmp_path / "a", "new"), fresh=False)
    assert start.resume_from is None and start.removed == ()


def test_clean_keeps_the_newest_published_runs_and_every_unfinished_one(tmp_path):
    asset = tmp_path / "lora_adapter_x"
    for i, name in enumerate(["old", "mid", "new"]):
        run = run_folder(asset, name)
        _checkpoint(run, 10, state_step=10)
        mark_published(run, asset / name)
        os.utime(run / "published.json", (1000 + i, 1000 + i))
    _checkpoint(run_folder(asset, "crashed"), 10, state_step=10)

    removed = clean(asset, keep=1)
    assert sorted(p.name for p in removed) == ["mid", "old"]
    assert sorted(p.name for p in (asset / ".runs").iterdir()) == ["crashed", "new"]
    assert clean(asset, keep=0) == [run_folder(asset, "new")]
    assert clean(tmp_path / "never_trained", keep=0) == []


def test_a_checkpoint_at_the_last_step_is_a_finished_run(tmp_path):
    last = _checkpoint(tmp_path, 184, state_step=184)
    (last / "trainer_state.json").write_text(json.dumps({"global_step": 184, "max_steps": 184}))
    middle = _checkpoint(tmp_path, 100, state_step=100)
    (middle / "trainer_state.json").write_text(json.dumps({"global_step": 100, "max_steps": 184}))
    assert finished(Checkpoint(184, last)) and not finished(Checkpoint(100, middle))


def test_a_run_folder_another_process_still_trains_into_is_not_touched(tmp_path):
    run = run_folder(tmp_path / "a", "k")
    _checkpoint(run, 20)  # half-written: the other trainer may still be writing it
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\nfrom mh_assets.checkpoints import "
         "training_lock\nwith training_lock(Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(60)",
         str(run)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RuntimeError, match="still training into"):
            prepare(run, fresh=False, wait_s=1)
        assert (run / "checkpoint-20").exists()
    finally:
        holder.kill()
        holder.wait()
    assert prepare(run, fresh=False, wait_s=5).removed == ("checkpoint-20",)  # the lock died with its holder

"""Long runs survive a kill: real ms-swift training of the tiny lane, killed after a checkpoint, resumes from it.

Two kinds of death: the whole ``dagster asset materialize`` process group SIGKILLed (as a crashed machine or an
OOM-killed run worker would leave it; the trainer must not run on), and only the training process killed inside a
run (the step fails, and its RetryPolicy resumes in the same run).
"""

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from mh_assets import defs
from mh_assets.checkpoints import Checkpoint, resume_point
from mh_assets.lane import load_lanes
from mh_assets_tests.conftest import REPO, cli_env, fresh_dagster_home

pytestmark = pytest.mark.e2e
TINY = load_lanes()["tiny"]
ADAPTER = TINY.key("lora_adapter")
DAGSTER = Path(sys.executable).parent / "dagster"
RECIPE = TINY.recipe.resolve()  # the shipped sample: 164 training conversations (20 held out)
STEPS = math.ceil(164 / RECIPE.per_device_train_batch_size) * RECIPE.num_train_epochs
SAVE_STEPS = 20  # a checkpoint every 20 of the run's steps: a kill lands mid-run, after at least one
CONFIG = {"save_steps": SAVE_STEPS}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Artifacts with everything training reads: the snapshot, the tiny base model and the training environment."""
    root = tmp_path_factory.mktemp("prepared") / "artifacts"
    with pytest.MonkeyPatch.context() as env, dg.instance_for_test() as instance:
        env.setenv("MH_ARTIFACTS_DIR", str(root))
        keys = ["dataset_snapshot", TINY.key("base_model"), TINY.key("training_env")]
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            asset_selection=[dg.AssetKey(k) for k in keys], instance=instance
        )
        assert result.success
    return root


@pytest.fixture
def root(prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy = tmp_path / "artifacts"
    shutil.copytree(prepared, copy, symlinks=True)
    monkeypatch.setenv("MH_ARTIFACTS_DIR", str(copy))
    return copy


def _runs(root: Path) -> Path:
    return root / ADAPTER / ".runs"


def _newest_checkpoint(root: Path) -> Checkpoint | None:
    found = [resume_point(run)[0] for run in _runs(root).glob("*")] if _runs(root).is_dir() else []
    return max((c for c in found if c is not None), key=lambda c: c.step, default=None)


def _wait_for_checkpoint(root: Path, ready=lambda: True, timeout_s: float = 600) -> Checkpoint:
    """The first complete checkpoint (once ``ready()`` holds too)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (checkpoint := _newest_checkpoint(root)) is not None and ready():
            return checkpoint
        time.sleep(0.05)
    raise AssertionError(f"no complete checkpoint under {_runs(root)} after {timeout_s} s")


def _progress_messages(home: Path) -> list[str]:
    """The training progress lines in the event log of the home's (only) run, read while it runs."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return [
            e.user_message
            for record in instance.get_run_records()
            for e in instance.all_logs(record.dagster_run.run_id)
            if e.user_message.startswith("training step")
        ]


def _pids_mentioning(text: str) -> list[int]:
    """Processes whose command line names ``text`` (the run folder: the trainer's ``--output_dir``)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return [pid for pid in pids if pid != os.getpid()]


def _wait_until_gone(text: str, timeout_s: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (left := _pids_mentioning(text)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _summary(root: Path) -> dict:
    return json.loads((root / ADAPTER / "latest" / "summary.json").read_text(encoding="utf-8"))


def _assert_resumed(summary: dict, step: int) -> None:
    assert summary["resumed_from_step"] == step
    assert summary["global_step"] == summary["max_steps"] == STEPS
    steps = [entry["step"] for entry in summary["loss_history"]]
    assert steps == sorted(set(steps)), "one loss entry per step, even for steps logged twice around the kill"
    assert steps[0] < step < steps[-1]


def _materialize(root: Path, home: Path) -> subprocess.Popen:
    config = json.dumps({"ops": {ADAPTER: {"config": CONFIG}}})
    return subprocess.Popen(
        [str(DAGSTER), "asset", "materialize", "--select", ADAPTER, "--config-json", config],
        cwd=REPO,
        env=cli_env(root, home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_killed_cli_run_leaves_no_trainer_and_resumes_from_its_checkpoint(root: Path, tmp_path: Path):
    home = fresh_dagster_home(tmp_path / "home")
    proc = _materialize(root, home)
    try:
        # progress is in the event log while the step still trains: it streams, it does not arrive at the end
        first = _wait_for_checkpoint(root, ready=lambda: bool(_progress_messages(home)))
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.communicate(timeout=60)
    run = first.path.parent
    assert _wait_until_gone(str(run)) == [], "the trainer outlived its killed step"
    killed_at, _ = resume_point(run)
    assert killed_at is not None and killed_at.step < STEPS, "training finished before the kill: nothing to resume"
    assert not (root / ADAPTER / "latest").exists()
    logged = _progress_messages(home)
    assert all(" loss " in m and "tokens/s" in m and "ETA" in m for m in logged), logged
    assert any(re.search(r"tokens/s \d", m) for m in logged), logged  # measured from the second logging step on

    again = _materialize(root, home)
    output, _ = again.communicate(timeout=900)
    assert again.returncode == 0, output[-3000:]
    assert f"resuming from step {killed_at.step}" in output
    _assert_resumed(_summary(root), killed_at.step)
    assert (run / "published.json").exists()

    # killed after its last checkpoint, before publishing: the next materialization publishes it, training nothing
    (run / "published.json").unlink()
    shutil.rmtree((root / ADAPTER / "latest").resolve())
    (root / ADAPTER / "latest").unlink()
    last = _materialize(root, home)
    output, _ = last.communicate(timeout=900)
    assert last.returncode == 0, output[-3000:]
    assert f"the run finished at step {STEPS} before it was published" in output and "training step" not in output
    assert _summary(root)["global_step"] == STEPS


def test_a_killed_trainer_is_retried_once_and_resumes_even_when_asked_to_start_fresh(root: Path):
    killed: list[Checkpoint] = []

    def kill_the_trainer() -> None:
        first = _wait_for_checkpoint(root)
        for pid in _pids_mentioning(str(first.path.parent)):
            try:  # the trainer's group: the runner, swift's CLI and the trainer it started
                os.killpg(os.getpgid(pid), signal.SIGKILL)
                break
            except ProcessLookupError:  # that one had just exited; the next will do
                continue
        _wait_until_gone(str(first.path.parent))
        newest, _ = resume_point(first.path.parent)
        killed.append(newest)

    killer = threading.Thread(target=kill_the_trainer, daemon=True)
    killer.start()
    with dg.instance_for_test() as instance:
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            asset_selection=[dg.AssetKey(ADAPTER)],
            run_config={"ops": {ADAPTER: {"config": {**CONFIG, "fresh": True}}}},
            instance=instance,
            raise_on_error=False,
        )
    killer.join(timeout=60)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    assert [e.event_type_value for e in result.all_events].count("STEP_RESTARTED") == 1
    (checkpoint,) = killed
    _assert_resumed(_summary(root), checkpoint.step)
    materialization = result.asset_materializations_for_node(ADAPTER)[-1]
    assert materialization.metadata["resumed_from_step"].value == checkpoint.step

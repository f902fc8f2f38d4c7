"""GPU exclusion, proven: two runs whose training steps both need pool ``gpu``, started at the same time by the CLI
on one instance (the project's dagster.yaml: pool limit 1), train one after the other. Two test-only lanes on the
tiny model carry the pool (``gpu: {pool: gpu}``) in a copy of the project."""

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import dagster as dg
import pytest

from mh_assets_tests.conftest import fresh_dagster_home
from mh_assets_tests.test_lane_component import _env, _project_copy

pytestmark = pytest.mark.e2e
DAGSTER = Path(sys.executable).parent / "dagster"
LANES = ("pool_a", "pool_b")


def _pool_lane(root: Path, name: str) -> None:
    text = (root / "mh_assets/defs/lanes/tiny/defs.yaml").read_text(encoding="utf-8")
    text = text.replace("  name: tiny\n", f"  name: {name}\n  gpu: {{pool: gpu}}\n")
    text = text.replace("exp_name: mh-sft-tiny-lora", f"exp_name: mh-sft-{name}")
    folder = root / "mh_assets/defs/lanes" / name
    folder.mkdir()
    (folder / "defs.yaml").write_text(text, encoding="utf-8")


def _materialize(root: Path, env: dict[str, str], keys: list[str], config: dict | None = None) -> subprocess.Popen:
    run_config = ["--config-json", json.dumps({"ops": {k: {"config": config} for k in keys}})] if config else []
    return subprocess.Popen(
        [str(DAGSTER), "asset", "materialize", "--select", ",".join(keys), *run_config],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def _step_span(instance: dg.DagsterInstance, run_id: str, step: str) -> tuple[float, float]:
    times = {
        e.dagster_event.event_type_value: e.timestamp
        for e in instance.all_logs(run_id)
        if e.dagster_event and e.step_key == step
    }
    return times[dg.DagsterEventType.STEP_START.value], times[dg.DagsterEventType.STEP_SUCCESS.value]


def test_two_runs_needing_the_gpu_pool_train_one_after_the_other(tmp_path: Path):
    root = _project_copy(tmp_path)
    for name in LANES:
        _pool_lane(root, name)
    home = fresh_dagster_home(tmp_path / "home")
    env = {k: v for k, v in _env(root).items() if not k.startswith(("PYTEST_", "DAGSTER_"))}
    env |= {
        "MH_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "DAGSTER_HOME": str(home),
        "DAGSTER_MODULE_NAME": "mh_assets",
    }

    upstream = ["dataset_snapshot"] + [f"{stage}_{name}" for name in LANES for stage in ("base_model", "training_env")]
    prepare = _materialize(root, env, upstream)
    output, _ = prepare.communicate(timeout=900)
    assert prepare.returncode == 0, output[-3000:]

    # at the same time; one epoch (46 steps) is enough to see them queue
    runs = [_materialize(root, env, [f"lora_adapter_{name}"], {"num_train_epochs": 1}) for name in LANES]
    outputs = [run.communicate(timeout=1200)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [o[-2000:] for o in outputs]
    assert any("blocked by limit for pool gpu" in o for o in outputs), "neither run waited for the pool"

    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = [
            r
            for r in instance.get_run_records()
            if any(f"lora_adapter_{n}" in str(r.dagster_run.asset_selection) for n in LANES)
        ]
        assert len(records) == 2
        spans = sorted(
            _step_span(instance, r.dagster_run.run_id, step)
            for r in records
            for step in [
                next(k for k in (f"lora_adapter_{n}" for n in LANES) if k in str(r.dagster_run.asset_selection))
            ]
        )
    (first_start, first_end), (second_start, second_end) = spans
    assert first_end <= second_start, (
        f"both trained at once: {datetime.fromtimestamp(first_start)}-{datetime.fromtimestamp(first_end)} and "
        f"{datetime.fromtimestamp(second_start)}-{datetime.fromtimestamp(second_end)}"
    )
    assert os.path.isdir(tmp_path / "artifacts" / "lora_adapter_pool_a" / "latest")
    assert os.path.isdir(tmp_path / "artifacts" / "lora_adapter_pool_b" / "latest")

"""The whole tiny lane for real: ms-swift training, merge and EvalScope on the locally built tiny model (CPU)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from mh_assets import defs
from mh_assets.defs.lanes import STAGES
from mh_assets.lanes import LANES
from mh_assets.swiftlog import parse_logging
from mh_assets_tests.conftest import REPO, cli_env, fresh_dagster_home

pytestmark = pytest.mark.e2e
TINY = LANES["tiny"]
DAGSTER = Path(sys.executable).parent / "dagster"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dg.ExecuteInProcessResult, Path]:
    root = tmp_path_factory.mktemp("tiny") / "artifacts"
    old = os.environ.get("MH_ARTIFACTS_DIR")
    os.environ["MH_ARTIFACTS_DIR"] = str(root)
    try:
        job = defs.resolve_job_def("tiny_lane")
        with dg.instance_for_test() as instance:
            result = job.execute_in_process(instance=instance, raise_on_error=False)
    finally:
        if old is None:
            os.environ.pop("MH_ARTIFACTS_DIR")
        else:
            os.environ["MH_ARTIFACTS_DIR"] = old
    return result, root


def _latest(root: Path, name: str) -> Path:
    return (root / name / "latest").resolve()


def test_every_step_and_check_succeeds(tiny_run):
    result, _ = tiny_run
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    keys = {
        m.asset_key.to_user_string() for m in result.get_asset_materialization_events() for m in [m.materialization]
    }
    assert keys == {
        "dataset_snapshot",
        *(TINY.key(s) for s in STAGES),
    }
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        "snapshot_not_empty": True,
        "quarantine_share_ok": True,
        "no_personal_data": True,
        "conversations_fit_max_length": True,
        "flash_attn_available": True,
        "precision_supported": True,
        "meets_minimums": True,
        "no_regression": True,
        "safety_pass_rate": True,
    }


def test_adapter_trained_and_loss_fell(tiny_run):
    _, root = tiny_run
    adapter = _latest(root, "lora_adapter_tiny")
    checkpoint = (adapter / "last-checkpoint").resolve()
    assert (checkpoint / "adapter_model.safetensors").stat().st_size > 0
    assert json.loads((checkpoint / "adapter_config.json").read_text())["peft_type"] == "LORA"
    log = parse_logging(adapter / "logging.jsonl")
    assert len(log.losses) >= 5
    assert log.last_loss < log.first_loss - 0.2, log.losses
    summary = json.loads((adapter / "summary.json").read_text())
    assert summary["command"].startswith("swift sft --model ")
    assert summary["swanlab_mode"] == "local" and summary["swanlab_run_id"]


def test_merged_model_loads_and_generates(tiny_run):
    _, root = tiny_run
    merged = _latest(root, "merged_model_tiny")
    from mh_assets.runners.merge import smoke_reply

    reply = smoke_reply(merged, "我最近总是睡不着，怎么办？", "float32", max_new_tokens=12)
    assert isinstance(reply, str) and reply.strip()
    assert list(merged.glob("*.safetensors"))


def test_scores_have_numbers(tiny_run):
    result, root = tiny_run
    scores = json.loads((_latest(root, "benchmark_scores_tiny") / "scores.json").read_text())
    mcq = scores["benchmarks"]["pceb_mcq"]
    assert mcq["n"] == TINY.eval_limits["pceb_mcq"]
    assert 0.0 <= mcq["exact_match"] <= mcq["partial_credit"] <= 1.0
    assert (_latest(root, "benchmark_scores_tiny") / "evalscope" / "reports").is_dir()
    mat = result.asset_materializations_for_node("benchmark_scores_tiny")[0]
    assert mat.metadata["pceb_mcq/n"].value == TINY.eval_limits["pceb_mcq"]
    psyqa, safety = scores["benchmarks"]["psyqa"], scores["benchmarks"]["safety"]
    assert psyqa["n"] == TINY.eval_limits["psyqa"] and 0.0 <= psyqa["rougeL"] <= 1.0
    assert safety["n"] == len(safety["probes"]) == TINY.eval_limits["safety"]
    assert scores["benchmarks"]["ceval"]["skipped"].startswith("no local mirror configured")
    assert "| pceb_mcq | 30 | partial_credit |" in mat.metadata["comparison"].value


def test_registry_holds_model_and_card(tiny_run):
    _, root = tiny_run
    published = _latest(root, f"registry/{TINY.hub_repo_id}")
    card = (published / "README.md").read_text()
    assert "base_model: builtin:tiny-qwen2" in card and "| pceb_mcq | 30 | exact_match |" in card
    assert (published / "model.safetensors").is_file()
    report = (_latest(root, "experiment_report_tiny") / "report.md").read_text()
    assert "## Results" in report and "swift sft" in report


def test_cli_materializes_the_lane_on_a_fresh_home(tmp_path: Path):
    home = fresh_dagster_home(tmp_path / "home")
    keys = ["dataset_snapshot", *(TINY.key(s) for s in ("base_model", "training_env", "lora_adapter", "merged_model"))]
    proc = subprocess.run(
        [str(DAGSTER), "asset", "materialize", "--select", ",".join(keys)],
        cwd=REPO,
        env=cli_env(tmp_path / "artifacts", home),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RUN_SUCCESS" in proc.stderr
    assert (tmp_path / "artifacts" / "merged_model_tiny" / "latest" / "config.json").is_file()
    assert list((home / "history").glob("runs*")) or (home / "storage").is_dir()


def test_cli_merged_model_7b_says_what_is_missing(tmp_path: Path):
    home = fresh_dagster_home(tmp_path / "home")
    proc = subprocess.run(
        [str(DAGSTER), "asset", "materialize", "--select", "merged_model_7b"],
        cwd=REPO,
        env=cli_env(tmp_path / "artifacts", home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "lora_adapter_7b has not been materialized" in proc.stderr
    assert "GPU" in proc.stderr

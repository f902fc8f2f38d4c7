"""The training-environment probe runs for real in a child process; its blocking checks judge each lane."""

import json

import dagster as dg

from mh_assets import defs


def _materialize(key: str) -> dg.ExecuteInProcessResult:
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        return job.execute_in_process(asset_selection=[dg.AssetKey(key)], instance=instance, raise_on_error=False)


def test_7b_lane_on_this_cpu_machine_is_stopped_with_reasons(artifacts):
    result = _materialize("training_env_7b")
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {"flash_attn_available", "precision_supported", "gpu_fit"}
    fit = evaluations["gpu_fit"]
    assert not fit.passed and "the 7b lane needs 1 GPU(s) with 80 GiB each: 0 visible" in fit.description
    flash, precision = evaluations["flash_attn_available"], evaluations["precision_supported"]
    assert not flash.passed and not precision.passed
    assert flash.severity == dg.AssetCheckSeverity.ERROR
    assert "flash-attn needs a CUDA GPU: none is visible" in flash.description
    assert "bfloat16" in precision.description
    facts = json.loads((artifacts / "training_env_7b" / "latest" / "facts.json").read_text())
    assert facts["gpus"] == [] and facts["torch"].startswith("2.")
    assert facts["cuda_visible_devices"] == "0"  # the lane's default device, as training would see it


def test_tiny_lane_needs_neither(artifacts):
    result = _materialize("training_env_tiny")
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 3
    assert all(e.passed and e.description.startswith("not required") for e in evaluations)

"""The code location: every lane's keys, tags, groups, pools and checks; and it loads without heavy imports."""

import subprocess
import sys

import dagster as dg

from mh_assets import defs
from mh_assets.defs.lanes import STAGES
from mh_assets.lanes import LANES


def test_definitions_validate():
    dg.Definitions.validate_loadable(defs)


def test_full_key_set_for_every_lane():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    expected = {"dataset_source", "eval_suite", "dataset_snapshot"} | {
        f"{stage}_{size}" for size in LANES for stage in STAGES
    }
    assert keys == expected
    for size in LANES:
        for stage in STAGES:
            node = graph.get(dg.AssetKey(f"{stage}_{size}"))
            assert node.tags["model_size"] == size
            assert node.group_name == f"model_{size}"
            assert not node.is_partitioned  # `--select merged_model_7b` must work without --partition


def test_gpu_lanes_share_the_gpu_pool():
    for stage in ("lora_adapter", "merged_model", "base_scores", "benchmark_scores"):
        for size, lane in LANES.items():
            pool = defs.resolve_assets_def(f"{stage}_{size}").op.pool
            assert pool == ("gpu" if lane.gpu.required else None), (stage, size, pool)


def test_blocking_checks_per_lane():
    graph = defs.resolve_asset_graph()
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert {("dataset_snapshot", "snapshot_not_empty"), ("dataset_snapshot", "quarantine_share_ok")} <= checks
    for size in LANES:
        assert {
            (f"training_env_{size}", "flash_attn_available"),
            (f"training_env_{size}", "precision_supported"),
            (f"benchmark_scores_{size}", "meets_minimums"),
            (f"benchmark_scores_{size}", "no_regression"),
            (f"benchmark_scores_{size}", "safety_gate"),
        } <= checks
    specs = {(s.asset_key.to_user_string(), s.name): s for c in defs.asset_checks for s in c.check_specs}
    warn_only = {("dataset_snapshot", "no_personal_data"), ("dataset_snapshot", "conversations_fit_max_length")}
    assert set(specs) == checks
    assert all(s.blocking != (key in warn_only) for key, s in specs.items())


def test_lineage_runs_through_the_lane():
    graph = defs.resolve_asset_graph()
    parents = {k.to_user_string() for k in graph.get(dg.AssetKey("lora_adapter_7b")).parent_keys}
    assert parents == {"dataset_snapshot", "base_model_7b", "training_env_7b"}
    parents = {k.to_user_string() for k in graph.get(dg.AssetKey("hub_upload_32b")).parent_keys}
    assert parents == {"merged_model_32b", "benchmark_scores_32b", "safety_review_32b"}


def test_loading_the_code_location_imports_nothing_heavy():
    code = (
        "import sys, mh_assets; heavy = [m for m in ('torch', 'swift', 'transformers', 'peft', 'evalscope', "
        "'swanlab', 'modelscope', 'datasets') if m in sys.modules]; print(heavy); assert not heavy"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hub_upload_is_automatic_only_when_a_team_opts_in(monkeypatch):
    from mh_assets.defs.lanes import build_lane

    def condition(assets):
        upload = next(a for a in assets if dg.AssetKey("hub_upload_7b") in getattr(a, "keys", ()))
        return next(iter(upload.specs)).automation_condition

    assert condition(defs.assets) is None
    monkeypatch.setenv("MH_AUTO_PUBLISH", "7b")
    opted_in = condition(build_lane(LANES["7b"])[0])
    expected = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
    assert opted_in is not None and opted_in.get_node_unique_id(parent_unique_id=None, index=None, target_key=None) == (
        expected.get_node_unique_id(parent_unique_id=None, index=None, target_key=None)
    )


def test_all_automation_is_on_by_default():
    """`make ui` automates with no clicks: every schedule and sensor starts running."""
    assert {s.name for s in defs.schedules} == {"observe_sources_schedule", "reevaluate_schedule"}
    assert all(s.default_status == dg.DefaultScheduleStatus.RUNNING for s in defs.schedules)
    sensors = list(defs.sensors)
    assert any(isinstance(s, dg.AutomationConditionSensorDefinition) for s in sensors)
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors)


def test_a_lane_run_observes_the_sources():
    for size in LANES:
        nodes = defs.resolve_job_def(f"{size}_lane").graph.node_dict
        assert {"dataset_source", "eval_suite"} <= set(nodes)

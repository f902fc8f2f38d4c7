"""The code location: every lane's keys, tags, groups, pools and checks; and it loads without heavy imports."""

import datetime
import subprocess
import sys

import dagster as dg

from mh_assets import defs
from mh_assets.lane import STAGES, load_lanes


def test_definitions_validate():
    dg.Definitions.validate_loadable(defs)


def test_full_key_set_for_every_lane():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    expected = {"dataset_source", "eval_suite", "dataset_snapshot"} | {
        f"{stage}_{size}" for size in load_lanes() for stage in STAGES
    }
    assert keys == expected
    for size in load_lanes():
        for stage in STAGES:
            node = graph.get(dg.AssetKey(f"{stage}_{size}"))
            assert node.tags["lane"] == size
            assert node.group_name == f"model_{size}"
            assert not node.is_partitioned  # `--select merged_model_7b` must work without --partition


def test_gpu_lanes_share_the_gpu_pool():
    for stage in ("lora_adapter", "merged_model", "base_scores", "benchmark_scores"):
        for size, lane in load_lanes().items():
            pool = defs.resolve_assets_def(f"{stage}_{size}").op.pool
            assert pool == ("gpu" if lane.gpu.required else None), (stage, size, pool)


def test_blocking_checks_per_lane():
    graph = defs.resolve_asset_graph()
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert {("dataset_snapshot", "snapshot_not_empty"), ("dataset_snapshot", "quarantine_share_ok")} <= checks
    for size in load_lanes():
        assert {
            (f"training_env_{size}", "flash_attn_available"),
            (f"training_env_{size}", "precision_supported"),
            (f"benchmark_scores_{size}", "meets_minimums"),
            (f"benchmark_scores_{size}", "no_regression"),
            (f"benchmark_scores_{size}", "improves_on_base"),
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
        "'swanlab', 'modelscope', 'datasets', 'lm_eval') if m in sys.modules]; print(heavy); assert not heavy"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hub_upload_is_automatic_only_when_a_team_opts_in(monkeypatch):
    from mh_assets.defs.publishing import hub_upload_asset

    def condition(asset: dg.AssetsDefinition) -> dg.AutomationCondition | None:
        return next(iter(asset.specs)).automation_condition

    assert condition(defs.resolve_assets_def("hub_upload_7b")) is None
    monkeypatch.setenv("MH_AUTO_PUBLISH", "7b")
    opted_in = condition(hub_upload_asset(load_lanes()["7b"]))
    expected = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
    assert opted_in is not None and opted_in.get_node_unique_id(parent_unique_id=None, index=None, target_key=None) == (
        expected.get_node_unique_id(parent_unique_id=None, index=None, target_key=None)
    )


def test_all_automation_is_on_by_default():
    """`make ui` automates with no clicks: no schedule scans the disk, the one sensor evaluating the assets'
    conditions starts running, and it covers the source assets too."""
    assert list(defs.schedules or []) == []
    sensors = list(defs.sensors)
    assert [s.name for s in sensors] == ["automation_sensor"]
    assert isinstance(sensors[0], dg.AutomationConditionSensorDefinition)
    assert sensors[0].default_status == dg.DefaultSensorStatus.RUNNING
    graph = defs.resolve_asset_graph()
    for key in ("dataset_source", "eval_suite", "dataset_snapshot", *(f"benchmark_scores_{n}" for n in load_lanes())):
        assert graph.get(dg.AssetKey(key)).automation_condition is not None, key


def test_a_lane_run_observes_the_sources():
    for size in load_lanes():
        nodes = defs.resolve_job_def(f"{size}_lane").graph.node_dict
        assert {"dataset_source", "eval_suite"} <= set(nodes)


def test_automation_conditions_fire_only_when_they_should():
    """Sources are observed at each 15-minute tick; a lane's scores are evaluated again at its cron tick once its
    merged model exists, and never for a lane without one."""
    utc = datetime.UTC
    monday_0259 = datetime.datetime(2026, 11, 30, 2, 59, 30, tzinfo=utc)  # tiny's cron: 0 3 * * 1
    with dg.instance_for_test() as instance:
        for key in ("merged_model_tiny", "base_model_tiny", "dataset_snapshot"):
            instance.report_runless_asset_event(dg.AssetMaterialization(key))
        for key in ("eval_suite", "dataset_source"):
            instance.report_runless_asset_event(dg.AssetObservation(key, tags={"dagster/data_version": "v1"}))

        def requested(cursor, at: datetime.datetime) -> tuple[set[str], object]:
            result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor, evaluation_time=at)
            return {r.key.to_user_string() for r in result.results if r.true_subset.size}, result.cursor

        _, cursor = requested(None, monday_0259)  # the first evaluation: whatever it asks for counts as handled
        wanted, cursor = requested(cursor, monday_0259 + datetime.timedelta(seconds=20))
        assert not wanted & {"benchmark_scores_tiny", "dataset_source", "eval_suite"}
        wanted, cursor = requested(cursor, monday_0259 + datetime.timedelta(minutes=1))  # 03:00:30, past both ticks
        assert {"benchmark_scores_tiny", "dataset_source", "eval_suite"} <= wanted
        assert not wanted & {"benchmark_scores_7b", "benchmark_scores_32b", "hub_upload_tiny"}
        wanted, _ = requested(cursor, monday_0259 + datetime.timedelta(minutes=2))  # 03:01:30: no new tick
        assert not wanted & {"benchmark_scores_tiny", "dataset_source", "eval_suite"}


def test_gpu_steps_say_what_they_need_in_their_description():
    graph = defs.resolve_asset_graph()
    for lane in ("7b", "32b"):
        for stage in ("lora_adapter", "merged_model", "benchmark_scores"):
            text = graph.get(dg.AssetKey(f"{stage}_{lane}")).description
            assert "**Needs 1 GPU(s) with 80 GiB each**" in text and "pool `gpu`" in text, text
    assert "Needs" not in graph.get(dg.AssetKey("lora_adapter_tiny")).description


def test_one_gate_or_environment_check_can_run_alone():
    """Each gate is a check of its own in the UI, though all are decided in one step: a run may ask for one (a job
    of one check of a step that cannot run a subset fails to resolve, DagsterInvalidSubsetError)."""
    for asset, name in (("benchmark_scores_tiny", "safety_gate"), ("training_env_7b", "gpu_fit")):
        check = dg.AssetCheckKey(dg.AssetKey(asset), name)
        job = dg.define_asset_job("one_check", selection=dg.AssetSelection.checks(check))
        one = dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=[job], resources=defs.resources)
        assert one.resolve_job_def("one_check").name == "one_check"


def test_without_base_scores_only_the_comparisons_a_lane_sets_fail():
    from mh_assets.benchmarks import Gates
    from mh_assets.defs.evaluation import gate_results

    tiny = load_lanes()["tiny"]
    scores = {"benchmarks": {}, "settings": {}}
    results = gate_results(tiny, scores, None, None)
    for name in ("no_regression", "improves_on_base"):
        assert results[name] == (False, ["base_scores_tiny has not been materialized"])
    plain = tiny.model_copy(update={"gates": Gates()})
    results = gate_results(plain, scores, None, None)
    assert results["no_regression"] == (True, ["no regression gate on this lane"])
    assert results["improves_on_base"] == (True, ["no improvement required on this lane"])

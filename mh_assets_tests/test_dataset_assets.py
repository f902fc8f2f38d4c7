"""dataset_source / dataset_snapshot through Dagster: checks, versions, and automation on a changed source."""

import json
from pathlib import Path

import dagster as dg
import pytest

from mh_assets import defs
from mh_assets.defs.resources import DatasetSourceResource

GOOD = [
    {
        "messages": [
            {"role": "user", "content": f"第{i}次来访，我有点紧张。"},
            {"role": "assistant", "content": "谢谢你来。"},
        ]
    }
    for i in range(30)
]


def _write(path: Path, rows: list, extra: list[str] = ()) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) + "".join(extra), encoding="utf-8")
    return path


def _defs_for(source: Path) -> dg.Definitions:
    return dg.Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        schedules=defs.schedules,
        resources={**defs.resources, "dataset": DatasetSourceResource(source=str(source))},
    )


def _snapshot(source: Path, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    job = _defs_for(source).resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        asset_selection=[dg.AssetKey("dataset_snapshot")], instance=instance, raise_on_error=False
    )


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_bad_rows_over_the_limit_stop_the_line(tmp_path: Path):
    src = _write(tmp_path / "d.jsonl", GOOD, ["{broken\n", "[1]\n", '{"messages": []}\n'])
    with dg.instance_for_test() as instance:
        result = _snapshot(src, instance)
    checks = _checks(result)
    assert not result.success
    gate = checks["quarantine_share_ok"]
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.ERROR
    assert "3 of 33 rows refused (9.1%, limit 5.0%)" in gate.description
    assert "invalid_json 1" in gate.description and "not_object 1" in gate.description
    assert checks["snapshot_not_empty"].passed


def test_personal_data_is_reported_without_values(tmp_path: Path, artifacts: Path):
    leaky = {
        "messages": [
            {"role": "user", "content": "打我电话 13912345678 或写信 me@example.com"},
            {"role": "assistant", "content": "谢谢信任，不过请别在这里留联系方式。"},
        ]
    }
    src = _write(tmp_path / "d.jsonl", [*GOOD, leaky])
    with dg.instance_for_test() as instance:
        result = _snapshot(src, instance)
    assert result.success  # a WARN check does not block
    check = _checks(result)["no_personal_data"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "mobile x1 at d.jsonl:31" in check.description and "email x1 at d.jsonl:31" in check.description
    exposed = [str(m.value) for m in check.metadata.values()] + [check.description]
    exposed += [p.read_text() for p in artifacts.rglob("manifest.json")]
    assert not any("13912345678" in x or "me@example.com" in x for x in exposed)


def test_metadata_has_length_statistics_per_lane(tmp_path: Path):
    src = _write(tmp_path / "d.jsonl", GOOD)
    with dg.instance_for_test() as instance:
        result = _snapshot(src, instance)
    meta = result.asset_materializations_for_node("dataset_snapshot")[0].metadata
    for lane in ("tiny", "7b", "32b"):
        assert (
            0 < meta[f"tokens_{lane}/p50"].value <= meta[f"tokens_{lane}/p95"].value <= meta[f"tokens_{lane}/max"].value
        )
        assert meta[f"tokens_{lane}/share_over_max_length"].value == 0.0
    assert "stand-in: base_model_7b is not materialized" in meta["tokens_7b/histogram"].value
    assert meta["rows_kept"].value == 30 and meta["quarantine_share"].value == 0.0


def test_missing_source_names_it(tmp_path: Path):
    with dg.instance_for_test() as instance:
        result = _snapshot(tmp_path / "nowhere.jsonl", instance)
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "nowhere.jsonl does not exist" in failure.step_failure_data.error.message


def test_snapshot_follows_the_source_and_only_changes(tmp_path: Path):
    """Observe the source; the eager condition asks for a snapshot once per changed content hash."""
    src = _write(tmp_path / "d.jsonl", GOOD)
    merged = _defs_for(src)
    observe = merged.resolve_job_def("observe_sources")

    def requested(instance: dg.DagsterInstance, cursor):
        result = dg.evaluate_automation_conditions(defs=merged, instance=instance, cursor=cursor)
        return {r.key.to_user_string() for r in result.results if r.true_subset.size}, result.cursor

    with dg.instance_for_test() as instance:
        _, cursor = requested(instance, None)  # the automation daemon's first tick
        assert observe.execute_in_process(instance=instance).success
        wanted, cursor = requested(instance, cursor)
        assert "dataset_snapshot" in wanted
        first = _snapshot(src, instance)
        assert first.success
        version = first.asset_materializations_for_node("dataset_snapshot")[0].tags["dagster/data_version"]

        assert observe.execute_in_process(instance=instance).success  # same content: nothing to do
        wanted, cursor = requested(instance, cursor)
        assert "dataset_snapshot" not in wanted

        _write(src, GOOD[:-1])  # the source changes
        assert observe.execute_in_process(instance=instance).success
        wanted, cursor = requested(instance, cursor)
        assert "dataset_snapshot" in wanted
        second = _snapshot(src, instance)
        assert second.asset_materializations_for_node("dataset_snapshot")[0].tags["dagster/data_version"] != version


@pytest.mark.parametrize("reason", ["same content, same data version"])
def test_resnapshot_of_unchanged_source_keeps_the_version(tmp_path: Path, reason):
    src = _write(tmp_path / "d.jsonl", GOOD)
    with dg.instance_for_test() as instance:
        versions = {
            _snapshot(src, instance).asset_materializations_for_node("dataset_snapshot")[0].tags["dagster/data_version"]
            for _ in range(2)
        }
    assert len(versions) == 1, reason


def test_new_refusals_with_the_same_kept_rows_get_their_own_folder(tmp_path: Path, artifacts: Path):
    src = _write(tmp_path / "d.jsonl", GOOD)
    with dg.instance_for_test() as instance:
        clean = _snapshot(src, instance)
        _write(src, GOOD, ["{broken\n"])
        dirty = _snapshot(src, instance)
    versions = [
        r.asset_materializations_for_node("dataset_snapshot")[0].tags["dagster/data_version"] for r in (clean, dirty)
    ]
    assert versions[0] == versions[1]  # what trains is unchanged: downstream stays fresh
    manifest = json.loads((artifacts / "dataset_snapshot" / "latest" / "manifest.json").read_text())
    assert manifest["rows_quarantined"] == 1 and manifest["quarantine_reasons"] == {"invalid_json": 1}


def test_training_rows_that_copy_evaluation_items_are_found_and_block(tmp_path: Path):
    """Conversations that copy safety probes into the training data: the check names the items; above 5% of the
    suite it blocks the snapshot's downstream."""
    from mh_assets.benchmarks import SUITE, load_benchmark

    probes = load_benchmark("safety", SUITE["safety"])
    copied = [
        {"messages": [{"role": "user", "content": p["prompt"]}, {"role": "assistant", "content": "我在这里陪着你。"}]}
        for p in probes
        if "prompt" in p
    ][:20]  # 20 of 343 items: 5.8%
    src = _write(tmp_path / "d.jsonl", [*GOOD, *copied])
    with dg.instance_for_test() as instance:
        result = _snapshot(src, instance)
    check = _checks(result)["no_eval_overlap"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert "20 of 343 evaluation items (5.8%) share text with the training data: safety/" in check.description
    src = _write(tmp_path / "d.jsonl", [*GOOD, *copied[:2]])  # 0.6%: below the warning
    with dg.instance_for_test() as instance:
        assert _checks(_snapshot(src, instance))["no_eval_overlap"].passed

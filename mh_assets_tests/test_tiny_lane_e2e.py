"""The whole tiny lane for real: ms-swift training, merge and EvalScope on the locally built tiny model (CPU)."""

import base64
import json
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from mh_assets import defs
from mh_assets.lane import STAGES, load_lanes
from mh_assets.models import LOAD_STATE_KEYS
from mh_assets.store import Store
from mh_assets.swiftlog import parse_logging
from mh_assets_tests.conftest import REPO, cli_env, fresh_dagster_home

pytestmark = pytest.mark.e2e
TINY = load_lanes()["tiny"]
DAGSTER = Path(sys.executable).parent / "dagster"


CANARIES = {  # secrets in the environment of the whole lane's run: none may be written anywhere
    "SWANLAB_API_KEY": "canary-swanlab-5f1d2c",
    "HF_TOKEN": "hf_canary7e3b9a41",
    "MODELSCOPE_API_TOKEN": "ms-canary-0c9d8e",
}


@dataclass
class Lane:
    result: dg.ExecuteInProcessResult
    root: Path
    instance: dg.DagsterInstance
    home: Path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lane]:
    """The whole tiny lane once; its artifacts and Dagster instance stay for the module's later runs."""
    root = tmp_path_factory.mktemp("tiny") / "artifacts"
    home = tmp_path_factory.mktemp("dagster_home")
    with pytest.MonkeyPatch.context() as env, dg.instance_for_test(temp_dir=str(home)) as instance:
        env.setenv("MH_ARTIFACTS_DIR", str(root))
        for name, value in CANARIES.items():
            env.setenv(name, value)
        result = defs.resolve_job_def("tiny_lane").execute_in_process(instance=instance, raise_on_error=False)
        yield Lane(result, root, instance, home)


def _run(lane: Lane, keys: list[str], config: dict | None = None) -> dg.ExecuteInProcessResult:
    job = defs.resolve_implicit_global_asset_job_def()
    run_config = {"ops": {k: {"config": c} for k, c in (config or {}).items()}}
    return job.execute_in_process(
        asset_selection=[dg.AssetKey(k) for k in keys], run_config=run_config, instance=lane.instance,
        raise_on_error=False,
    )  # fmt: skip


def _latest(root: Path, name: str) -> Path:
    return (root / name / "latest").resolve()


def test_every_step_and_check_succeeds(tiny_run):
    result = tiny_run.result
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
        "no_eval_overlap": True,
        "flash_attn_available": True,
        "precision_supported": True,
        "gpu_fit": True,
        "meets_minimums": True,
        "no_regression": True,
        "improves_on_base": True,
        "safety_gate": True,
        "learned_from_data": True,
    }
    for source in ("dataset_source", "eval_suite"):  # the lane run observed its sources
        assert tiny_run.instance.fetch_observations(dg.AssetKey(source), limit=1).records, source


def test_adapter_trained_and_loss_fell(tiny_run):
    root = tiny_run.root
    adapter = _latest(root, "lora_adapter_tiny")
    checkpoint = (adapter / "last-checkpoint").resolve()
    assert (checkpoint / "adapter_model.safetensors").stat().st_size > 0
    assert json.loads((checkpoint / "adapter_config.json").read_text())["peft_type"] == "LORA"
    log = parse_logging(adapter / "logging.jsonl")
    assert len(log.losses) >= 5
    assert log.last_loss < log.first_loss - 0.2, log.losses
    # validated on the held-out conversations at every eval_steps, and better at the end than at the first
    snapshot = json.loads((_latest(root, "dataset_snapshot") / "manifest.json").read_text())
    assert snapshot["rows_val"] >= 20 and snapshot["rows_train"] + snapshot["rows_val"] == snapshot["rows_kept"]
    every = TINY.recipe.resolve().eval_steps
    steps = [s for s, _ in log.val_losses]  # every eval_steps, and at the end
    assert steps == sorted({*range(every, log.steps + 1, every), log.steps}), log.val_losses
    assert log.val_losses[-1][1] < log.val_losses[0][1]
    summary = json.loads((adapter / "summary.json").read_text())
    assert summary["command"].startswith("swift sft --model ") and "--val_dataset" in summary["command"]
    assert len(summary["val_loss_history"]) == len(log.val_losses)
    assert summary["swanlab_mode"] == "local" and summary["swanlab_run_id"]


def test_merged_model_loads_and_generates(tiny_run):
    root = tiny_run.root
    merged = _latest(root, "merged_model_tiny")
    from mh_assets.runners.merge import smoke_reply

    reply = smoke_reply(merged, "我最近总是睡不着，怎么办？", "float32", max_new_tokens=12)
    assert isinstance(reply, str) and reply.strip()
    assert list(merged.glob("*.safetensors"))
    # nothing of how the tokenizer was loaded here (HF_HUB_OFFLINE...) is in the files its version is hashed from
    saved = json.loads((merged / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert not set(LOAD_STATE_KEYS) & set(saved)


def test_scores_have_numbers(tiny_run):
    result, root = tiny_run.result, tiny_run.root
    scores = json.loads((_latest(root, "benchmark_scores_tiny") / "scores.json").read_text())
    mcq = scores["benchmarks"]["pceb_mcq"]
    assert mcq["n"] == TINY.evaluation.limits["pceb_mcq"]
    assert 0.0 <= mcq["exact_match"] <= mcq["partial_credit"] <= 1.0
    assert (_latest(root, "benchmark_scores_tiny") / "evalscope" / "reports").is_dir()
    mat = result.asset_materializations_for_node("benchmark_scores_tiny")[0]
    assert mat.metadata["pceb_mcq/n"].value == TINY.evaluation.limits["pceb_mcq"]
    psyqa, safety = scores["benchmarks"]["psyqa"], scores["benchmarks"]["safety"]
    assert psyqa["n"] == TINY.evaluation.limits["psyqa"] and 0.0 <= psyqa["rougeL"] <= 1.0
    assert safety["n"] == len(safety["probes"]) == TINY.evaluation.limits["safety"]
    assert scores["benchmarks"]["ceval"]["skipped"].startswith("no local mirror configured")
    assert "| pceb_mcq | 30 | partial_credit |" in mat.metadata["comparison"].value
    # scheme A beside EvalScope: the same questions' single-answer part, scored by log-likelihood, for both models
    base = json.loads((_latest(root, "base_scores_tiny") / "scores.json").read_text())
    for measured in (scores, base):
        ll = measured["benchmarks"]["pceb_mcq_ll"]
        several = ll["left_to_evalscope"]["multi_answer_questions"]
        assert several > 0 and ll["n"] + several == mcq["n"]
        assert ll["acc_ci95"][0] <= ll["acc"] <= ll["acc_ci95"][1] and len(ll["items"]) == ll["n"]
    assert f"| pceb_mcq_ll | {ll['n']} | acc |" in mat.metadata["comparison"].value
    # the positive control: lower loss on the held-out conversations than the base model, paired, with its interval
    val = scores["benchmarks"]["val_loss"]
    assert val["n"] >= 20 and val["mean_ci95"][0] <= val["mean"] <= val["mean_ci95"][1]
    assert "| val_loss |" in mat.metadata["comparison"].value
    (learned,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "learned_from_data"]
    figures = {k: v.value for k, v in learned.metadata.items()}
    assert figures["delta_ci95_high"] < 0 and figures["val_loss_fine_tuned"] < figures["val_loss_base"]


def test_registry_holds_model_and_card(tiny_run):
    root = tiny_run.root
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
    # what the UI shows for the failed step: the message first, and no second trace of a chained cause under it
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (record,) = instance.get_run_records()
        failures = [
            e.dagster_event.step_failure_data.error
            for e in instance.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        ]
    (failure,) = failures
    assert failure.message.split(": ", 1)[1].startswith("lora_adapter_7b has not been materialized")
    assert failure.cause is None and failure.context is None


SMALL = {"limits": {"pceb_mcq": 4, "psyqa": 2, "safety": 2}}
SCORES = ["base_scores_tiny", "benchmark_scores_tiny"]


def _both(config: dict) -> dict:
    """The same evaluation settings for base and fine-tuned scores: only such a pair is compared."""
    return {key: config for key in SCORES}


def _deploy_processes(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (FileNotFoundError, PermissionError, ProcessLookupError, NotADirectoryError):
            continue
        if "swift.cli.deploy" in cmdline and marker in cmdline:
            found.append(int(proc.name))
    return found


def _gates_for_few_items(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """From the service-mode test on, the latest scores come from a suite cut to a few items, where no gain can be
    shown with an interval: the tests about serving and uploading gate on drops and the screen alone."""
    gates = tmp_path / "gates.yaml"
    gates.write_text("tiny:\n  no_regression: {psyqa.rouge1: 0.0}\n  safety: {require_verification: false}\n")
    monkeypatch.setenv("MH_GATES_FILE", str(gates))


def test_service_mode_starts_and_stops_swift_deploy(tiny_run, monkeypatch, tmp_path):
    """The runbook's way: swift deploy on loopback, EvalScope through its OpenAI API, then the server is gone."""
    monkeypatch.setenv("MH_ARTIFACTS_DIR", str(tiny_run.root))
    _gates_for_few_items(monkeypatch, tmp_path)
    result = _run(tiny_run, SCORES, _both({"mode": "service", **SMALL}))
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    scores = json.loads((_latest(tiny_run.root, "benchmark_scores_tiny") / "scores.json").read_text())
    assert scores["target"]["mode"] == "service" and scores["target"]["backend"] == "transformers"
    assert "--host 127.0.0.1" in scores["served_by"] and "--served_model_name mh-sft-tiny" in scores["served_by"]
    assert scores["benchmarks"]["pceb_mcq"]["n"] == 4 and scores["benchmarks"]["safety"]["n"] == 2
    # swift deploy's completions give the new token's log-probability only, not the prompt's: scheme A says so
    assert "returns no prompt log-probabilities" in scores["benchmarks"]["pceb_mcq_ll"]["skipped"]
    assert _deploy_processes(str(_latest(tiny_run.root, "merged_model_tiny"))) == []
    assert _deploy_processes(str(_latest(tiny_run.root, "base_model_tiny"))) == []
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["no_regression"].passed, checks["no_regression"].description  # same settings: compared


def test_failing_gate_stops_hub_upload_in_the_same_run(tiny_run, monkeypatch, tmp_path):
    monkeypatch.setenv("MH_ARTIFACTS_DIR", str(tiny_run.root))
    strict = tmp_path / "gates.yaml"
    strict.write_text("tiny:\n  minimum:\n    pceb_mcq.partial_credit: 0.9\n  no_regression: {}\n")
    monkeypatch.setenv("MH_GATES_FILE", str(strict))
    registry = tiny_run.root / "registry" / TINY.hub_repo_id
    before = sorted(p.name for p in registry.iterdir())
    result = _run(tiny_run, [*SCORES, "hub_upload_tiny"], _both({"mode": "local", **SMALL}))
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not checks["meets_minimums"].passed
    description = checks["meets_minimums"].description
    assert "pceb_mcq.partial_credit 0.000 (95% CI" in description and "minimum 0.9 on the point estimate" in description
    assert not result.asset_materializations_for_node("hub_upload_tiny")
    assert sorted(p.name for p in registry.iterdir()) == before


def test_scheduled_reevaluation_asks_only_for_lanes_with_a_merged_model(tiny_run):
    """After the lane run, the next tick of the tiny lane's cron asks for its scores again, and for no lane that
    has no merged model."""
    import datetime

    assert TINY.evaluation.reevaluate_cron == "0 3 * * 1"
    before = datetime.datetime(2026, 12, 7, 2, 59, tzinfo=datetime.UTC)  # a Monday, just before 03:00

    def requested(cursor, at):
        result = dg.evaluate_automation_conditions(
            defs=defs, instance=tiny_run.instance, cursor=cursor, evaluation_time=at
        )
        return {r.key.to_user_string() for r in result.results if r.true_subset.size}, result.cursor

    _, cursor = requested(None, before)
    wanted, cursor = requested(cursor, before + datetime.timedelta(seconds=30))
    assert "benchmark_scores_tiny" not in wanted
    wanted, _ = requested(cursor, before + datetime.timedelta(minutes=2))
    assert "benchmark_scores_tiny" in wanted
    assert not wanted & {"benchmark_scores_7b", "benchmark_scores_32b"}


def test_changed_suite_marks_every_evaluated_lane_for_reevaluation(tiny_run, monkeypatch, tmp_path):
    import mh_assets.benchmarks as benchmarks

    monkeypatch.setenv("MH_ARTIFACTS_DIR", str(tiny_run.root))
    observe = defs.resolve_job_def("observe_sources")

    def requested(cursor):
        result = dg.evaluate_automation_conditions(defs=defs, instance=tiny_run.instance, cursor=cursor)
        return {r.key.to_user_string() for r in result.results if r.true_subset.size}, result.cursor

    _, cursor = requested(None)
    assert observe.execute_in_process(instance=tiny_run.instance).success
    _, cursor = requested(cursor)  # the first observation: whatever it asks for is handled now
    assert observe.execute_in_process(instance=tiny_run.instance).success
    wanted, cursor = requested(cursor)
    assert not wanted & {"benchmark_scores_tiny", "base_scores_tiny"}  # same suite: nothing to re-evaluate

    changed = tmp_path / "safety.jsonl"
    changed.write_text(benchmarks.SUITE["safety"].read_text(encoding="utf-8").split("\n", 1)[1], encoding="utf-8")
    monkeypatch.setitem(benchmarks.SUITE, "safety", changed)
    assert observe.execute_in_process(instance=tiny_run.instance).success
    wanted, _ = requested(cursor)
    assert {"benchmark_scores_tiny", "base_scores_tiny"} <= wanted
    assert not wanted & {"benchmark_scores_7b", "base_scores_7b"}  # nothing to evaluate there: no model


def _with_hub(**hub) -> dg.Definitions:
    from mh_assets.defs.resources import HubResource

    resources = {**defs.resources, "hub": HubResource(**hub)}
    return dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, resources=resources)


def _upload(lane: Lane, definitions: dg.Definitions, target: str, keys=("hub_upload_tiny",), config=None):
    job = definitions.resolve_implicit_global_asset_job_def()
    ops = {"hub_upload_tiny": {"config": {"target": target, "repo_id": "team/mh-sft-tiny"}}, **(config or {})}
    return job.execute_in_process(
        asset_selection=[dg.AssetKey(k) for k in keys], run_config={"ops": ops}, instance=lane.instance,
        raise_on_error=False,
    )  # fmt: skip


def test_huggingface_upload_through_a_loopback_hub_server(tiny_run, monkeypatch, tmp_path):
    """The real huggingface_hub client against a loopback server speaking the Hub's HTTP API (hf_hub_stub)."""
    from mh_assets_tests.hf_hub_stub import hf_hub_stub

    monkeypatch.setenv("MH_ARTIFACTS_DIR", str(tiny_run.root))
    _gates_for_few_items(monkeypatch, tmp_path)
    monkeypatch.setenv("HF_TOKEN", CANARIES["HF_TOKEN"])
    with hf_hub_stub(token=CANARIES["HF_TOKEN"]) as hub:
        definitions = _with_hub(hf_token=dg.EnvVar("HF_TOKEN"), hf_endpoint=hub.endpoint)
        first = _upload(tiny_run, definitions, "huggingface")
        assert first.success, [e.message for e in first.all_events if e.is_failure]
        meta = first.asset_materializations_for_node("hub_upload_tiny")[0].metadata
        repo = hub.repos["team/mh-sft-tiny"]
        # the files, then the provenance in the commit titled with the version (the sign the whole version is there)
        assert repo["private"] and [c["title"] for c in repo["commits"]] == [
            f"mh-assets model version {_latest(tiny_run.root, 'merged_model_tiny').name}: files",
            f"mh-assets model version {_latest(tiny_run.root, 'merged_model_tiny').name}",
        ]
        assert meta["revision"].value == repo["commits"][-1]["id"] and meta["new_commit"].value is True
        files = hub.files("team/mh-sft-tiny")
        merged = _latest(tiny_run.root, "merged_model_tiny")
        assert files["model.safetensors"] == (merged / "model.safetensors").read_bytes()
        assert files["README.md"].decode().startswith("---\nlanguage:")
        assert json.loads(files["mh_assets.json"])["version"] == merged.name

        again = _upload(tiny_run, definitions, "huggingface")  # same model version: no new commit
        assert again.success and len(repo["commits"]) == 2
        assert again.asset_materializations_for_node("hub_upload_tiny")[0].metadata["new_commit"].value is False


def test_wrong_token_fails_with_the_hubs_message_and_records_nothing(tiny_run, monkeypatch, tmp_path):
    from mh_assets_tests.hf_hub_stub import hf_hub_stub

    monkeypatch.setenv("MH_ARTIFACTS_DIR", str(tiny_run.root))
    _gates_for_few_items(monkeypatch, tmp_path)
    records = tiny_run.root / "hub_upload_tiny"
    before = sorted(p.name for p in records.iterdir() if not p.name.startswith("."))
    with hf_hub_stub(token="hf_the_right_one") as hub:
        result = _upload(tiny_run, _with_hub(hf_token="hf_wrong", hf_endpoint=hub.endpoint), "huggingface")
        assert not hub.repos
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "Invalid credentials in Authorization header" in failure.step_failure_data.error.message
    assert "hf_wrong" not in failure.step_failure_data.error.message
    assert sorted(p.name for p in records.iterdir() if not p.name.startswith(".")) == before


def test_failing_gate_sends_zero_upload_requests(tiny_run, monkeypatch, tmp_path):
    from mh_assets_tests.hf_hub_stub import hf_hub_stub

    monkeypatch.setenv("MH_ARTIFACTS_DIR", str(tiny_run.root))
    strict = tmp_path / "gates.yaml"
    strict.write_text("tiny:\n  safety:\n    pass_rate_lower_bound: 0.99\n    require_verification: false\n")
    monkeypatch.setenv("MH_GATES_FILE", str(strict))
    with hf_hub_stub(token="hf_x") as hub:
        result = _upload(
            tiny_run, _with_hub(hf_token="hf_x", hf_endpoint=hub.endpoint), "huggingface",
            keys=(*SCORES, "hub_upload_tiny"),
            config={key: {"config": {"mode": "local", **SMALL}} for key in SCORES},
        )  # fmt: skip
        assert hub.requests == []
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["safety_gate"] is False
    assert not result.asset_materializations_for_node("hub_upload_tiny")


def test_report_and_card_carry_the_runs_numbers(tiny_run):
    root = tiny_run.root
    report_dir = _latest(root, "experiment_report_tiny")
    report = (report_dir / "report.md").read_text()
    summary = json.loads((_latest(root, "lora_adapter_tiny") / "summary.json").read_text())
    scores = json.loads((_latest(root, "benchmark_scores_tiny") / "scores.json").read_text())
    for section in ("## Overview", "## Environment", "## Data", "## Recipe", "## Training", "## Results",
                    "## Sample dialogues", "## Safety probes", "## Known issues met in this run"):  # fmt: skip
        assert section in report
    assert f"Loss {summary['first_loss']} → {summary['last_loss']}" in report
    for command in ("swift sft", "swift export", "swift deploy"):  # one option per line, as a shell reads them
        assert f"{command} \\\n  --" in report, command
    assert scores["samples"][0]["question"] in report
    # the tiny model writes no readable exam answer: every figure with its interval, the paired delta, and no verdict
    unparsed = "| pceb_mcq | 30 | unparsed | 1.000 [0.886, 1.000] | 1.000 [0.886, 1.000] | +0.000 [+0.000, +0.000] |"
    assert unparsed in report
    assert "| pceb_mcq | 30 | partial_credit | 0.000 [0.000, 0.000] |" in report and "no difference shown" in report
    # both evaluators of the exam side by side (the lane's 30 questions), and what separates them
    assert "### The exam by both evaluators" in report
    evalscope_row = "| pceb_mcq | EvalScope: the letter read from the reply (exact match) | 30 | 0.000 [0.000, 0.114] |"
    assert evalscope_row in report
    (ll,) = re.findall(r"\| pceb_mcq \| lm-eval: the likeliest answer letter \(acc\) \| (\d+) \| [01]\.\d{3} \[",
                       report)  # fmt: skip
    (several,) = re.findall(r"pceb_mcq: (\d+) multi-answer question\(s\) are scored by EvalScope only", report)
    assert int(ll) + int(several) == 30 and int(several) > 0
    assert "<polyline" in (report_dir / "loss.svg").read_text()
    # the curve travels inside the text (the UI shows the report as markdown: a relative link would break there)
    (uri,) = re.findall(r"!\[training loss\]\((data:image/svg\+xml;base64,[A-Za-z0-9+/=]+)\)", report)
    assert "<polyline" in base64.b64decode(uri.split(",", 1)[1]).decode()
    # one name for the snapshot: its version folder, as the report, the card and the artifacts call it
    snapshot = _latest(root, "dataset_snapshot")
    assert f"dataset snapshot\n`{snapshot.name}`" in report
    assert "<table>" in (report_dir / "report.html").read_text()
    card = (_latest(root, f"registry/{TINY.hub_repo_id}") / "README.md").read_text()
    for part in ("base_model: builtin:tiny-qwen2", "## Evaluation (fine-tuned vs base)", "## Safety",
                 "400-161-9995", "swift deploy", "AutoModelForCausalLM", summary["command"].split()[0]):  # fmt: skip
        assert part in card
    assert f"Dataset snapshot `{snapshot.name}`" in card


def test_model_card_example_runs_in_the_published_folder(tiny_run, monkeypatch):
    from mh_assets.modelcard import TRANSFORMERS_SNIPPET

    monkeypatch.chdir(_latest(tiny_run.root, f"registry/{TINY.hub_repo_id}"))
    printed = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: printed.append(a))
    exec(TRANSFORMERS_SNIPPET.replace("max_new_tokens=256", "max_new_tokens=8"), {})
    assert len(printed) == 1 and isinstance(printed[0][0], str)


def test_no_secret_is_written_anywhere(tiny_run):
    """Canary tokens were in the environment of every step: grep every file the runs produced and the Dagster home."""
    leaks = []
    for folder in (tiny_run.root, tiny_run.home):
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                leaks += [f"{path}: {name}" for name, value in CANARIES.items() if value.encode() in data]
    assert leaks == []


def test_publishing_needs_a_persons_approval_of_the_current_scores(tiny_run, monkeypatch, tmp_path):
    """With review_before_publish (the GPU lanes' setting), hub_upload runs only on an approval of these scores:
    none, a rejection or an approval of older scores blocks it with a message saying which."""
    monkeypatch.setenv("MH_ARTIFACTS_DIR", str(tiny_run.root))
    gates = tmp_path / "gates.yaml"
    gates.write_text("tiny:\n  safety:\n    require_verification: false\n    review_before_publish: true\n")
    monkeypatch.setenv("MH_GATES_FILE", str(gates))

    def upload_failure() -> str:
        result = _upload(tiny_run, defs, "local")
        assert not result.asset_materializations_for_node("hub_upload_tiny")
        return next(e for e in result.all_events if e.is_step_failure).step_failure_data.error.message

    def review(**config) -> dg.ExecuteInProcessResult:
        result = _run(tiny_run, ["safety_review_tiny"], {"safety_review_tiny": config})
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        return result

    from mh_assets.benchmarks import scores_version

    current = scores_version(json.loads((_latest(tiny_run.root, "benchmark_scores_tiny") / "scores.json").read_text()))

    pending = review()  # only the packet: nothing decided yet
    assert pending.asset_materializations_for_node("safety_review_tiny")[0].metadata["decision"].value == "pending"
    assert (_latest(tiny_run.root, "safety_review_tiny") / "packet.html").read_text().count("<tr") >= 2
    assert "no human review of these scores" in upload_failure()

    wrong = _run(tiny_run, ["safety_review_tiny"], {"safety_review_tiny": {
        "reviewer": "Dr. Wang", "decision": "approve", "scores_version": "0123456789ab"}})  # fmt: skip
    assert not wrong.success and "no human review of these scores" in upload_failure()
    review(reviewer="Dr. Wang", decision="reject", notes="replies say nothing", scores_version=current)
    assert "rejected by Dr. Wang" in upload_failure()

    review(reviewer="Dr. Wang", decision="approve", notes="read the packet", scores_version=current)
    approved = _upload(tiny_run, defs, "local")
    assert approved.success, [e.message for e in approved.all_events if e.is_failure]
    assert review().asset_materializations_for_node("safety_review_tiny")[0].metadata["decision"].value == "approve"

    other = {"mode": "local", "limits": {"pceb_mcq": 3, "psyqa": 2, "safety": 3}}
    evaluated = _run(tiny_run, SCORES, _both(other))
    assert evaluated.success  # new scores: the approval no longer covers them
    message = upload_failure()
    assert "is stale" in message and "approve" in message and "safety_review_tiny" in message


def test_a_merge_that_left_the_adapter_out_fails_learned_from_data(tiny_run, monkeypatch):
    """A merged model whose weights are its base's (the adapter never applied) is scored and caught; the next
    test re-materializes the lane's merged model."""
    monkeypatch.setenv("MH_ARTIFACTS_DIR", str(tiny_run.root))
    store = Store(tiny_run.root)
    with store.staging("merged_model_tiny") as tmp:
        shutil.copytree(_latest(tiny_run.root, "base_model_tiny"), tmp, dirs_exist_ok=True)
        store.finalize(tmp, "base-weights-only")
    result = _run(tiny_run, ["base_scores_tiny", "benchmark_scores_tiny"])
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    check = checks["learned_from_data"]
    assert not check.passed and "the model did not learn from the data" in check.description
    assert check.metadata["delta"].value == 0.0
    assert not checks["improves_on_base"].passed and "delta +0.000" in checks["improves_on_base"].description


def test_a_dataset_with_shuffled_replies_fails_the_psyqa_gates(tiny_run, monkeypatch):
    """Training on replies shuffled character by character (which characters counselling uses, kept; the language,
    gone): the fine-tuned model does not beat its base on psyqa nor reach the lane's minimum. The lane is trained
    again on that snapshot; the next test trains it again too."""
    monkeypatch.setenv("MH_ARTIFACTS_DIR", str(tiny_run.root))
    store, rng = Store(tiny_run.root), random.Random(0)
    with store.staging("dataset_snapshot") as tmp:
        shutil.copytree(_latest(tiny_run.root, "dataset_snapshot"), tmp, dirs_exist_ok=True)
        rows = [json.loads(line) for line in (tmp / "train.jsonl").read_text(encoding="utf-8").splitlines()]
        for message in (m for row in rows for m in row["messages"] if m["role"] == "assistant"):
            message["content"] = "".join(rng.sample(message["content"], len(message["content"])))
        (tmp / "train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
        store.finalize(tmp, "shuffled-replies")
    result = _run(tiny_run, ["lora_adapter_tiny", "merged_model_tiny", "benchmark_scores_tiny"])
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert "improves_on_base" in checks, [str(e.event_specific_data)[:3000] for e in result.all_events if e.is_failure]
    assert not checks["improves_on_base"].passed
    assert "no gain over the base model shown" in checks["improves_on_base"].description
    minimums = checks["meets_minimums"]
    assert not minimums.passed and "minimum 0.09 on the point estimate" in minimums.description
    assert not checks["no_regression"].passed, checks["no_regression"].description
    assert checks["no_regression"].description.endswith("a real drop")
    assert not result.success


def test_a_teams_own_lm_eval_task_runs_beside_the_suite(tiny_run, monkeypatch, tmp_path):
    """The runbook's task YAML, given by path in the run config of the fine-tuned evaluation only, scores that model
    as written; the gates still compare the rest of the suite with the base model's."""
    monkeypatch.setenv("MH_ARTIFACTS_DIR", str(tiny_run.root))
    _gates_for_few_items(monkeypatch, tmp_path)
    team = tmp_path / "team-tasks"
    shutil.copytree(Path(__file__).parent / "data" / "lm_eval_runbook", team)
    local = {"mode": "local", **SMALL}
    config = {
        "base_scores_tiny": local,
        "benchmark_scores_tiny": {**local, "lm_eval_tasks": [str(team / "pceb_mcq.yaml")]},
    }
    result = _run(tiny_run, SCORES, config)
    scores = json.loads((_latest(tiny_run.root, "benchmark_scores_tiny") / "scores.json").read_text())
    own = scores["benchmarks"]["lm_eval_pceb_mcq"]
    assert own["n"] == 9 and own["acc_ci95"][0] <= own["acc"] <= own["acc_ci95"][1]  # its 9 single-answer rows
    assert scores["benchmarks"]["pceb_mcq_ll"]["n"] + 1 == SMALL["limits"]["pceb_mcq"]  # one multi-answer
    assert set(scores["settings"]["lm_eval"]) == {"pceb_mcq_ll", "lm_eval_pceb_mcq"}
    base = json.loads((_latest(tiny_run.root, "base_scores_tiny") / "scores.json").read_text())
    assert "lm_eval_pceb_mcq" not in base["benchmarks"] and set(base["settings"]["lm_eval"]) == {"pceb_mcq_ll"}
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["no_regression"].passed, checks["no_regression"].description


def test_a_learning_rate_of_0_fails_the_lane_at_learned_from_data(tiny_run, monkeypatch):
    """Last in this module: it replaces the lane's adapter with one that learned nothing."""
    monkeypatch.setenv("MH_ARTIFACTS_DIR", str(tiny_run.root))
    keys = ["lora_adapter_tiny", "merged_model_tiny", "benchmark_scores_tiny"]
    result = _run(tiny_run, keys, {"lora_adapter_tiny": {"learning_rate": 0.0}})
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert "learned_from_data" in checks, [str(e.event_specific_data)[:3000] for e in result.all_events if e.is_failure]
    assert not checks["learned_from_data"].passed
    assert "the model did not learn from the data" in checks["learned_from_data"].description
    assert checks["learned_from_data"].metadata["delta"].value == 0.0
    assert not result.success  # the check blocks: nothing downstream of the scores may run on them

"""Child process: the evaluation suite through EvalScope, against a local model, a ``swift deploy`` service that
this process starts and stops, or any running OpenAI-compatible endpoint. Writes ``scores.json`` and EvalScope's own
report folder (``evalscope/``, for ``evalscope app``) into ``work_dir``.

Extras: ``target`` (``{"mode": "local", "model_dir", "torch_dtype"}`` | ``{"mode": "service", "model_dir", "backend",
"served_model_name", "model_type", "template", "torch_dtype"}`` | ``{"mode": "endpoint", "api_url", "model"}``, each
with ``concurrency``: requests in flight, EvalScope's ``eval_batch_size``), ``suite`` (benchmark -> file),
``limits`` (benchmark -> n), ``max_tokens``, ``work_dir``, ``judge`` and ``safety_judge`` (the counselling and the
safety judges, each ``{"judges": [{"api_url", "model"}], "samples": n}`` or None), ``mirrors`` (``{"ceval": dir,
"cmmlu": dir, "safety_bench": dir}``), ``lm_eval_tasks`` (paths of a team's own lm-eval task YAMLs, run as written
beside the shipped log-likelihood exam ``pceb_mcq_ll``; see ``mh_assets.loglik``). The counselling dialogues are
written again turn by turn (the model gets the conversation up to each client turn) and each new turn is judged.
The judges are asked one request at a time.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

from mh_assets.benchmarks import (
    dialogue_turns,
    evaluation_settings,
    load_benchmark,
    mcq_scores,
    probe_messages,
    psyqa_scores,
    read_jsonl,
    read_reviews,
    safety_scores,
    suite_hash,
    to_dialogue_qa,
    to_exam_qa,
    to_general_qa,
)
from mh_assets.judge import judge_keypoints, judge_safety, judge_turns
from mh_assets.lane import Evaluation
from mh_assets.loglik import LL_SUFFIX, exam_tasks, logprobs_refusal, run_tasks, tasks_hash, user_tasks
from mh_assets.mirrors import EXAM_MIRRORS, MIRROR_ENV, MirrorError, read_exam_mirror
from mh_assets.models import hub_endpoint, reachable
from mh_assets.procs import free_port, start_group, stop_group
from mh_assets.serve import deploy_command
from mh_assets.stats import outward, wilson_interval
from mh_assets.valloss import conversation_losses, val_loss_scores, val_set_hash

READY_TIMEOUT_S = 600
SAMPLE_DIALOGUES = 3  # the first psyqa questions, kept with the answers for the report


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def wait_ready(api_url: str, proc: Any = None, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Poll ``/models`` until the server answers; fail if it exits or the time is up."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the model server exited with code {proc.returncode} before it was ready")
        try:
            with opener.open(api_url.rstrip("/") + "/models", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{api_url} did not answer /models within {timeout_s:.0f} s")


def model_kwargs(target: dict[str, Any]) -> dict[str, Any]:
    """EvalScope's model settings for a target; ``eval_batch_size`` is the number of requests in flight (or of
    samples generated together by a local model)."""
    batch = {"eval_batch_size": target.get("concurrency") or Evaluation.default_concurrency(target["mode"])}
    if target["mode"] == "local":
        model_dir = Path(target["model_dir"])
        return {
            "model": str(model_dir),
            "model_id": model_dir.name,
            "eval_type": "llm_ckpt",
            "model_args": {"precision": target.get("torch_dtype", "auto")},
            **batch,
        }
    return {
        "model": target["model"],
        "model_id": target["model"].replace("/", "_"),
        "eval_type": "openai_api",
        "api_url": target["api_url"],
        "api_key": os.environ.get("MH_EVAL_API_KEY", "EMPTY"),
        **batch,
    }


def generate(data_dir: Path, subsets: list[str], kwargs: dict[str, Any], max_tokens: int, work_dir: Path) -> None:
    """The model's replies to ``data_dir/<subset>.jsonl`` (``question``/``answer`` rows) in one EvalScope task, at
    temperature 0, under ``work_dir/reviews/<model_id>/general_qa_<subset>.jsonl``."""
    from evalscope import TaskConfig, run_task

    run_task(
        TaskConfig(
            datasets=["general_qa"],
            dataset_args={
                # Rouge only: EvalScope's BLEU logs an error on every short reply; ours is computed in benchmarks
                "general_qa": {"local_path": str(data_dir), "subset_list": subsets, "metric_list": ["Rouge"]},
            },
            work_dir=str(work_dir),
            no_timestamp=True,
            generation_config={"max_tokens": max_tokens, "temperature": 0.0},
            **kwargs,
        )
    )


def run_suite(target: dict[str, Any], ex: dict[str, Any]) -> dict[str, Any]:
    """The shipped (or replaced) suite in one EvalScope task, scored by ``mh_assets.benchmarks``."""
    work_dir = Path(ex["work_dir"])
    data_dir = work_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    files = {name: Path(path) for name, path in ex["suite"].items()}
    limits = ex.get("limits") or {}
    rows = {name: load_benchmark(name, path)[: limits.get(name)] for name, path in files.items()}
    mirrored, exams = exam_mirrors(ex, limits)
    exam_rows = {"pceb_mcq": rows["pceb_mcq"], **mirrored}
    for name, exam in exam_rows.items():
        write_jsonl(data_dir / f"{name}.jsonl", to_exam_qa(exam))
    write_jsonl(data_dir / "counselling_dialogues.jsonl", to_dialogue_qa(rows["counselling_dialogues"]))
    for name in ("psyqa", "safety"):
        write_jsonl(data_dir / f"{name}.jsonl", to_general_qa(name, rows[name]))
    log_likelihood, lm_eval_tasks = exam_log_likelihood(target, exam_rows, ex, work_dir / "lm_eval")  # frees its model
    kwargs = model_kwargs(target)
    evalscope_dir = work_dir / "evalscope"
    subsets = ["pceb_mcq", "psyqa", "safety", "counselling_dialogues", *mirrored]
    generate(data_dir, subsets, kwargs, ex["max_tokens"], evalscope_dir)
    reviews = evalscope_dir / "reviews" / kwargs["model_id"]
    mcq = [r["prediction"] for r in read_reviews(reviews / "general_qa_pceb_mcq.jsonl")]
    psyqa = [r["prediction"] for r in read_reviews(reviews / "general_qa_psyqa.jsonl")]
    safety = [r["prediction"] for r in read_reviews(reviews / "general_qa_safety.jsonl")]
    turns = dialogue_turns(rows["counselling_dialogues"])
    replies = [r["prediction"] for r in read_reviews(reviews / "general_qa_counselling_dialogues.jsonl")]
    safety_judge = ex.get("safety_judge")
    judged = None
    if safety_judge:
        judged = judge_safety(
            safety_judge["judges"],
            int(safety_judge.get("samples", 2)),
            [probe_messages(r) for r in rows["safety"]],
            safety,
            os.environ.get("MH_SAFETY_JUDGE_API_KEY") or os.environ.get("MH_JUDGE_API_KEY", "EMPTY"),
        )
    benchmarks: dict[str, Any] = {
        "pceb_mcq": mcq_scores(rows["pceb_mcq"], mcq),
        "psyqa": psyqa_scores(rows["psyqa"], psyqa),
        "safety": safety_scores(rows["safety"], safety, judged=judged),
    }
    judge = ex.get("judge")
    if judge:
        benchmarks["counselling"] = judge_turns(
            judge["judges"],
            int(judge.get("samples", 2)),
            [{**t, "reply": r} for t, r in zip(turns, replies, strict=True)],
            os.environ.get("MH_JUDGE_API_KEY", "EMPTY"),
        )
        benchmarks["psyqa_judged"] = judge_keypoints(
            judge["judges"],
            int(judge.get("samples", 2)),
            [{**row, "id": row.get("id", str(i)), "answer": reply}
             for i, (row, reply) in enumerate(zip(rows["psyqa"], psyqa, strict=True))],
            os.environ.get("MH_JUDGE_API_KEY", "EMPTY"),
        )  # fmt: skip
    else:
        benchmarks["counselling"] = {"skipped": "no judge endpoint configured (MH_JUDGE_URL, MH_JUDGE_MODEL)"}
        benchmarks["psyqa_judged"] = {"skipped": "no judge endpoint configured (MH_JUDGE_URL, MH_JUDGE_MODEL)"}
    for name, exam in mirrored.items():
        replies = [r["prediction"] for r in read_reviews(reviews / f"general_qa_{name}.jsonl")]
        benchmarks[name] = {**mcq_scores(exam, replies), "rows_without_key": exams[name]}
    benchmarks.update({name: {"skipped": why} for name, why in exams.items() if isinstance(why, str)})
    for name in HUB_EXAMS:
        mirror = (ex.get("mirrors") or {}).get(EXAM_DATASETS.get(name, name))
        benchmarks[name] = run_exam(name, mirror, kwargs, ex, evalscope_dir)
    benchmarks.update(log_likelihood)
    samples = [{"question": r["question"], "answer": a} for r, a in zip(rows["psyqa"], psyqa, strict=True)]
    samples = samples[:SAMPLE_DIALOGUES]
    return {"suite_sha256": suite_hash(files), "benchmarks": benchmarks, "samples": samples, "lm_eval": lm_eval_tasks}


def exam_log_likelihood(
    target: dict[str, Any], exams: dict[str, list[dict[str, Any]]], ex: dict[str, Any], data_dir: Path
) -> tuple[dict[str, Any], dict[str, str]]:
    """The exams' single-answer questions (``<exam>_ll``) and the team's own task YAMLs (``lm_eval_tasks``) scored
    by lm-eval; and what each task was (for the comparability settings). Against a server without prompt
    log-probabilities, or one lm-eval cannot use, every task is skipped saying why."""
    tasks, left, empty = exam_tasks(exams, data_dir)
    tasks.update(user_tasks(ex.get("lm_eval_tasks") or []))
    settings = tasks_hash(tasks)
    if target["mode"] == "local":
        results = run_tasks(tasks, target, optional=frozenset(f"{m}{LL_SUFFIX}" for m in EXAM_MIRRORS))
    else:
        key = os.environ.get("MH_EVAL_API_KEY", "EMPTY")
        why = logprobs_refusal(target["api_url"], target["model"], key)
        try:  # each task that fails against the server is skipped with its own reason
            results = run_tasks(tasks, {**target, "api_key": key}, optional=frozenset(tasks)) if not why else {}
        except Exception as exc:  # the server offered log-probabilities, but lm-eval could not use it at all
            why = f"lm-eval against {target['api_url']}: {type(exc).__name__}: {exc}"[:500]
        if why:
            results = {name: {"skipped": why} for name in tasks}
    for name, entry in {**results, **empty}.items():
        if name in left:
            entry["left_to_evalscope"] = {"multi_answer_questions": left[name]}
    return {**results, **empty}, settings


def exam_mirrors(ex: dict[str, Any], limits: dict[str, int]) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """The configured psychology exam mirrors (CPsyExam, a counsellor-exam bank) as exam rows, and per mirror
    either how many rows had no usable key or why it was skipped."""
    mirrored: dict[str, list[dict[str, Any]]] = {}
    notes: dict[str, Any] = {}
    for name in EXAM_MIRRORS:
        path = (ex.get("mirrors") or {}).get(name)
        if not path:
            notes[name] = f"no local mirror configured ({MIRROR_ENV[name]})"
            continue
        try:
            rows, without_key = read_exam_mirror(name, path)
        except (MirrorError, ValueError, OSError) as exc:  # a broken mirror must not cost the rest of the suite
            notes[name] = f"{name} mirror unusable: {exc}"[:500]
            continue
        mirrored[name], notes[name] = rows[: limits.get(name)], without_key
    return mirrored, notes


HUB_EXAMS = ("ceval", "cmmlu", "cmmlu_psychology", "safety_bench")  # EvalScope's adapters, from a mirror or the hub
# SafetyBench: the Chinese subset; its "Mental Health" category is reported beside the overall accuracy; CMMLU's
# professional psychology subject on its own (from the same mirror as CMMLU)
EXAM_ARGS: dict[str, dict[str, Any]] = {
    "safety_bench": {"subset_list": ["zh_subset"]},
    "cmmlu_psychology": {"subset_list": ["professional_psychology"]},
}
EXAM_DATASETS = {"cmmlu_psychology": "cmmlu"}  # benchmark -> EvalScope dataset (and mirror)
MENTAL_HEALTH = "Mental Health"


def run_exam(name: str, mirror: str | None, kwargs: dict[str, Any], ex: dict[str, Any], work: Path) -> dict[str, Any]:
    """C-Eval / CMMLU / SafetyBench from a local mirror, or from the hub when reachable; otherwise skipped with the
    reason."""
    if not mirror and not reachable(hub_endpoint("modelscope")):
        return {"skipped": f"no local mirror configured ({MIRROR_ENV[name]}) and the hub is not reachable"}
    from evalscope import TaskConfig, run_task

    args = {**EXAM_ARGS.get(name, {}), **({"local_path": mirror} if mirror else {})}
    try:
        dataset = EXAM_DATASETS.get(name, name)
        report = run_task(
            TaskConfig(
                datasets=[dataset],
                dataset_args={dataset: args},
                work_dir=str(work),
                no_timestamp=True,
                limit=(ex.get("limits") or {}).get(name),
                generation_config={"max_tokens": ex["max_tokens"], "temperature": 0.0},
                **kwargs,
            )
        )[dataset]
    except Exception as exc:  # a broken mirror must not cost the rest of the suite
        return {"skipped": f"{name} failed: {type(exc).__name__}: {exc}"[:500]}
    result = {"n": report.metrics[0].num, **accuracy("accuracy", report.metrics[0].score, report.metrics[0].num)}
    if name == "safety_bench":
        for category in report.metrics[0].categories or []:
            if MENTAL_HEALTH in category.name and category.num:
                result.update(mental_health_n=category.num, **accuracy("mental_health_accuracy", category.score,
                                                                        category.num))  # fmt: skip
    return result


def accuracy(name: str, score: float, n: int) -> dict[str, Any]:
    """An exam's accuracy with its Wilson 95% interval (EvalScope reports the share right of ``n``)."""
    return {name: score, f"{name}_ci95": outward(*wilson_interval(round(score * n), n))}


def validation_loss(target: dict[str, Any], ex: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The model's loss on the snapshot's validation conversations (``ex["val"]``: file, limit, and the lane's
    model_type, template and max_length) and what it was measured on; skipped, saying why, where it cannot be."""
    val = ex.get("val")
    if not val:
        return {"skipped": "the dataset snapshot holds no validation split (val_share and val_min are 0)"}, None
    if not target.get("model_dir"):
        return {"skipped": "endpoint mode: no local model to score the validation conversations with"}, None
    rows = read_jsonl(Path(val["file"]))[: val.get("limit")]
    items = conversation_losses(
        target["model_dir"], rows, val["model_type"], val["template"], val["max_length"], target["torch_dtype"]
    )
    return val_loss_scores(items), val_set_hash(rows, val["template"], val["max_length"])


def evaluate(ex: dict[str, Any]) -> dict[str, Any]:
    target = dict(ex["target"])
    val_loss, val_set = validation_loss(target, ex)  # before a server takes the GPUs
    if target["mode"] != "service":
        scores = run_suite(target, ex)
    else:
        port = free_port()
        command = deploy_command(
            model_dir=target["model_dir"],
            backend=target["backend"],
            served_model_name=target["served_model_name"],
            model_type=target["model_type"],
            template=target["template"],
            torch_dtype=target["torch_dtype"],
            port=port,
            concurrency=target["concurrency"],
        )
        server = start_group(command, os.environ)
        try:
            api_url = f"http://127.0.0.1:{port}/v1"
            wait_ready(api_url, server)
            endpoint = {"mode": "endpoint", "api_url": api_url, "model": target["served_model_name"]}
            scores = run_suite({**endpoint, "concurrency": target.get("concurrency"), "tokenizer": target["model_dir"]},
                               ex)  # fmt: skip
        finally:
            stop_group(server)
        scores["served_by"] = " ".join(command)
    scores["benchmarks"]["val_loss"] = val_loss
    scores["target"] = {k: v for k, v in target.items() if "key" not in k}
    scores["settings"] = evaluation_settings(target, scores["suite_sha256"], ex) | {
        "val_set": val_set,
        "lm_eval": scores.pop("lm_eval"),
    }
    (Path(ex["work_dir"]) / "scores.json").write_text(json.dumps(scores, ensure_ascii=False, indent=2), "utf-8")
    return scores


def flat_metrics(scores: dict[str, Any]) -> dict[str, float]:
    """``benchmark/figure`` -> number, for Dagster metadata (so the UI plots each figure over time)."""
    return {
        f"{bench}/{name}": float(value)
        for bench, result in scores["benchmarks"].items()
        for name, value in result.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def main() -> None:
    from mh_assets.runners import child_pipes

    with child_pipes() as pipes:
        scores = evaluate(pipes.extras)
        pipes.log.info(f"scores: {flat_metrics(scores)}")
        pipes.report_asset_materialization(metadata=flat_metrics(scores))


if __name__ == "__main__":
    main()

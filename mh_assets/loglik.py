"""The runbook's scheme A: lm-evaluation-harness scores exams by log-likelihood, beside EvalScope's replies.

The shipped task (``data/eval/pceb_mcq_ll.yaml``) runs on the single-answer questions of ``pceb_mcq`` and of every
exam mirror in the same format (``<exam>_ll``); a team's own task YAMLs run as written. A local model is lm-eval's
``hf`` model; a server is its ``local-completions`` model, which needs prompt log-probabilities (``echo`` with
``logprobs``): servers that give none are skipped with that reason. lm-eval is imported only inside the functions
that run it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from mh_assets.exam import gold_letters
from mh_assets.stats import bootstrap_interval, outward, wilson_interval

TASK_FILE = Path(__file__).parent / "data" / "eval" / "pceb_mcq_ll.yaml"
LL_SUFFIX = "_ll"  # pceb_mcq -> pceb_mcq_ll
Z95 = 1.959964


class TaskError(ValueError):
    """A task YAML that cannot run, naming the file and what is wrong."""


def single_answer(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The questions with exactly one right answer (the key written as one letter), and how many have several:
    one log-likelihood choice cannot score a question with several right answers."""
    single = []
    for row in rows:
        gold = gold_letters(row["answer"], len(row["choices"]))
        if len(gold) == 1:
            single.append({**row, "answer": next(iter(gold))})
    return single, len(rows) - len(single)


def exam_task(exam: str, data_file: Path) -> dict[str, Any]:
    """The shipped task for one exam's single-answer rows in ``data_file``, named ``<exam>_ll``."""
    config = yaml.safe_load(TASK_FILE.read_text(encoding="utf-8"))
    config["task"] = exam + LL_SUFFIX
    config["dataset_kwargs"] = {**config.get("dataset_kwargs", {}), "data_files": {"test": str(data_file)}}
    return config


class _NameLoader(yaml.SafeLoader):
    """Reads lm-eval's own tags (``!function``) as empty values: only the task's name is needed before it runs."""


_NameLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def task_name(path: Path) -> str:
    """The ``task:`` of a single-task YAML; a missing file, a group or a YAML without a task fails naming the file."""
    try:
        config = yaml.load(path.read_text(encoding="utf-8"), Loader=_NameLoader)  # noqa: S506 (a SafeLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise TaskError(f"{path}: not a readable lm-eval task YAML: {exc}") from None
    if not isinstance(config, dict) or "group" in config or not isinstance(config.get("task"), str):
        raise TaskError(f"{path}: an lm-eval task YAML needs a `task:` name (one task per file; groups are not run)")
    return config["task"]


def tasks_hash(tasks: dict[str, Any]) -> dict[str, str]:
    """Task name -> a digest of what decides its scores (the config, or the YAML file as written): two sets of
    scores are comparable only when these match."""

    def digest(spec: Any) -> str:
        raw = Path(spec).read_bytes() if isinstance(spec, str) else json.dumps(spec, sort_keys=True).encode()
        return hashlib.sha256(raw).hexdigest()[:12]

    return {name: digest(spec) for name, spec in sorted(tasks.items())}


def logprobs_refusal(api_url: str, model: str, api_key: str = "EMPTY") -> str | None:
    """None when the server's completions API gives prompt log-probabilities (what lm-eval's ``local-completions``
    asks: ``echo`` with ``logprobs``), else why not, for the skipped figure."""
    url = api_url.rstrip("/") + "/completions"
    body = {"model": model, "prompt": "你好", "max_tokens": 1, "logprobs": 1, "echo": True, "temperature": 0}
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=60) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return f"{url} answered HTTP {exc.code}: a chat-completions server gives no prompt log-probabilities"
    except (OSError, ValueError) as exc:
        return f"{url} gave no usable answer ({type(exc).__name__}: {exc})"
    try:
        token_logprobs = answer["choices"][0]["logprobs"]["token_logprobs"]
    except (KeyError, IndexError, TypeError):
        token_logprobs = None
    if not isinstance(token_logprobs, list) or len(token_logprobs) < 2:
        return f"{url} returns no prompt log-probabilities (echo with logprobs), which lm-eval needs"
    return None


def _figure(name: str, values: list[float]) -> dict[str, Any]:
    if all(v in (0.0, 1.0) for v in values):
        k = int(sum(values))
        return {name: k / len(values), f"{name}_ci95": outward(*wilson_interval(k, len(values)))}
    return {name: sum(values) / len(values), f"{name}_ci95": outward(*bootstrap_interval(values))}


def task_scores(samples: list[dict[str, Any]], metrics: list[str], aggregated: dict[str, Any]) -> dict[str, Any]:
    """One task's entry for ``scores.json``: ``n``, each metric with its 95% interval (Wilson for right/wrong items,
    bootstrap otherwise, lm-eval's standard error for a corpus-level metric), and every item (by the row's ``id``
    where it has one) with the choice it took."""
    items = []
    for sample in sorted(samples, key=lambda s: s["doc_id"]):
        doc = sample.get("doc")
        own_id = doc.get("id") if isinstance(doc, dict) else None
        item: dict[str, Any] = {"id": str(sample["doc_id"] if own_id is None else own_id)}
        item.update({m: float(sample[m]) for m in metrics if _number(sample.get(m))})
        scored = [r[0] for r in sample.get("filtered_resps") or [] if isinstance(r, (list, tuple)) and _number(r[0])]
        arguments = sample.get("arguments") or []
        if scored and len(scored) == len(arguments) and isinstance(sample.get("target"), int):
            item["gold"] = str(arguments[sample["target"]][1]).strip()
            item["chosen"] = str(arguments[scored.index(max(scored))][1]).strip()
        items.append(item)
    result: dict[str, Any] = {"n": len(items)}
    corpus = []
    for m in metrics:
        values = [it[m] for it in items if m in it]
        if items and len(values) == len(items):
            result.update(_figure(m, values))
            continue
        value, stderr = aggregated.get(f"{m},none"), aggregated.get(f"{m}_stderr,none")
        if _number(value) and _number(stderr):
            result[m], result[f"{m}_ci95"] = value, outward(value - Z95 * stderr, value + Z95 * stderr)
        else:
            corpus.append(m)
    if corpus:
        result["not_reported"] = f"no per-item values or standard error for {', '.join(corpus)}"
    return {**result, "items": items}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def exam_tasks(exams: dict[str, list[dict[str, Any]]], data_dir: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """The shipped task for each exam (its single-answer rows written to ``data_dir``), and per task how many
    multi-answer questions were left to EvalScope."""
    data_dir.mkdir(parents=True, exist_ok=True)
    tasks: dict[str, Any] = {}
    left: dict[str, int] = {}
    for exam, rows in exams.items():
        single, several = single_answer(rows)
        data_file = data_dir / f"{exam}_single.jsonl"
        data_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in single), encoding="utf-8")
        tasks[exam + LL_SUFFIX], left[exam + LL_SUFFIX] = exam_task(exam, data_file), several
    return tasks, left


def user_tasks(paths: list[str], taken: set[str]) -> dict[str, str]:
    """A team's own task YAMLs by name (each run as written); a name given twice or taken by another benchmark
    fails naming the file."""
    tasks: dict[str, str] = {}
    for given in paths:
        path = Path(given).expanduser().resolve()
        name = task_name(path)
        if name in taken or name in tasks:
            raise TaskError(f"{given}: task {name!r} is already a benchmark of the suite or another task file")
        tasks[name] = str(path)
    return tasks


def run_tasks(tasks: dict[str, Any], target: dict[str, Any], batch_size: int = 8) -> dict[str, dict[str, Any]]:
    """Every task (name -> a config dict, or the path of a YAML run as written, from its own folder) on the
    target: ``{"mode": "local", "model_dir", "torch_dtype"}`` (lm-eval's ``hf`` model) or ``{"api_url", "model",
    "tokenizer"}`` (its ``local-completions`` model). Returns task name -> ``task_scores``."""
    import gc

    import torch
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    if target["mode"] == "local":
        from lm_eval.models.huggingface import HFLM

        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = HFLM(pretrained=target["model_dir"], dtype=target.get("torch_dtype", "auto"), batch_size=batch_size,
                     device=device)  # fmt: skip
    else:
        from lm_eval.models.openai_completions import LocalCompletionsAPI

        model = LocalCompletionsAPI(
            base_url=target["api_url"].rstrip("/") + "/completions",
            model=target["model"],
            tokenizer=target.get("tokenizer") or target["model"],
            tokenizer_backend="huggingface",
            num_concurrent=target.get("concurrency") or 1,
            max_retries=3,
        )
    results: dict[str, dict[str, Any]] = {}
    try:
        for name, spec in tasks.items():
            label = spec if isinstance(spec, str) else name
            where = Path(spec).parent if isinstance(spec, str) else Path.cwd()
            try:
                with contextlib.chdir(where):  # relative data files resolve from the YAML's folder, as includes do
                    out = simple_evaluate(model=model, tasks=[spec], task_manager=TaskManager(include_defaults=False),
                                          log_samples=True, bootstrap_iters=1000)  # fmt: skip
            except Exception as exc:  # name the task file: lm-eval's own message rarely does
                raise TaskError(f"{label}: lm-eval failed: {type(exc).__name__}: {exc}") from exc
            if not out or name not in out["results"]:
                found = sorted(out["results"]) if out else []
                raise TaskError(f"{label}: lm-eval ran {found}, not the task {name!r}")
            metrics = list(dict.fromkeys(m for s in out["samples"][name] for m in s.get("metrics", [])))
            results[name] = task_scores(out["samples"][name], metrics, out["results"][name])
    finally:
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return results

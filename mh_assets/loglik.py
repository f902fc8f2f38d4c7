"""The runbook's scheme A: lm-evaluation-harness scores exams by log-likelihood, beside EvalScope's replies.

The shipped task (``data/eval/pceb_mcq_ll.yaml``) runs on the single-answer questions of ``pceb_mcq`` and of every
exam mirror in the same format (``<exam>_ll``); a team's own task YAMLs run as written. A local model is lm-eval's
``hf`` model; a server is its ``local-completions`` model, which needs prompt log-probabilities (``echo`` with
``logprobs``): servers that give none are skipped with that reason. lm-eval is imported only inside the functions
that run it.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import math
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from mh_assets.benchmarks import _mean, _share
from mh_assets.exam import gold_letters
from mh_assets.stats import Z95, outward

TASK_FILE = Path(__file__).parent / "data" / "eval" / "pceb_mcq_ll.yaml"
LL_SUFFIX = "_ll"  # pceb_mcq -> pceb_mcq_ll
TEAM_PREFIX = "lm_eval_"  # a team's task "pceb_mcq" is lm_eval_pceb_mcq in scores.json, apart from the suite's own


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


def _sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:12]


def _by_content(files: Any, folder: Path) -> Any:
    """``data_files`` with each local file (or every file a pattern matches) named by its content, not by where it
    lies; a name that matches no local file stays as written."""
    if isinstance(files, dict):
        return {key: _by_content(value, folder) for key, value in sorted(files.items())}
    if isinstance(files, list):
        return [_by_content(value, folder) for value in files]
    found = sorted(glob.glob(str(folder / str(files)), recursive=True))  # an absolute path stays itself
    return [_sha(Path(f).read_bytes()) for f in found if Path(f).is_file()] or files


def _local_dataset(path: Any, folder: Path) -> Any:
    """A ``dataset_path`` that is a local folder (it has a ``/`` and exists: ``datasets`` reads such a folder) by
    the content of its files; a builder name (``json``) or a hub name stays as written."""
    if not isinstance(path, str) or "/" not in path or path.startswith("hf://") or not (folder / path).is_dir():
        return path
    return _by_content(f"{path}/**/*", folder)


def tasks_hash(tasks: dict[str, Any]) -> dict[str, str]:
    """Task name -> a digest of what decides its scores: the config, or the YAML file as written with the YAMLs and
    Python helpers beside it (where its ``include`` and ``!function`` are found), and the content of its local data
    (``data_files``, a local ``dataset_path`` folder) wherever it lies. Scores are comparable only when these match."""

    def digest(spec: Any) -> str:
        if isinstance(spec, str):
            folder, raw = Path(spec).parent, Path(spec).read_bytes()
            config = yaml.load(raw, Loader=_NameLoader)  # noqa: S506 (a SafeLoader)
            includes = config.get("include") or []
            for include in includes if isinstance(includes, list) else [includes]:  # its data may come from these
                config = {**yaml.load((folder / include).read_bytes(), Loader=_NameLoader), **config}  # noqa: S506
            beside = [f for pattern in ("*.yaml", "*.yml", "*.py") for f in sorted(folder.glob(pattern))]
            described: dict[str, Any] = {"task": _sha(raw),
                                         "beside": {f.name: _sha(f.read_bytes()) for f in beside}}  # fmt: skip
        else:  # where its data lies is not part of it: data_files is replaced by the content below
            kwargs = {k: v for k, v in (spec.get("dataset_kwargs") or {}).items() if k != "data_files"}
            folder, config, described = Path.cwd(), spec, {**spec, "dataset_kwargs": kwargs}
        described["data_files"] = _by_content((config.get("dataset_kwargs") or {}).get("data_files"), folder)
        described["dataset_path"] = _local_dataset(config.get("dataset_path"), folder)
        return _sha(json.dumps(described, sort_keys=True, ensure_ascii=False).encode())

    return {name: digest(spec) for name, spec in sorted(tasks.items())}


def logprobs_refusal(api_url: str, model: str, api_key: str = "EMPTY") -> str | None:
    """None when the server's completions API gives prompt log-probabilities (what lm-eval's ``local-completions``
    asks: ``echo`` with ``logprobs``), else why not, for the skipped figure."""
    url = api_url.rstrip("/") + "/completions"
    body = {"model": model, "prompt": "你好", "max_tokens": 1, "logprobs": 1, "echo": True, "temperature": 0}
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
        with opener.open(request, timeout=60) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 405):
            return f"{url} answered HTTP {exc.code}: a chat-only server gives no prompt log-probabilities"
        return f"{url} answered HTTP {exc.code}: {exc.read()[:300].decode('utf-8', 'replace')}"
    except Exception as exc:  # a malformed URL, a broken connection or reply: the figure is skipped saying so
        return f"{url} gave no usable answer ({type(exc).__name__}: {exc})"
    try:
        token_logprobs = answer["choices"][0]["logprobs"]["token_logprobs"]
    except (KeyError, IndexError, TypeError):
        token_logprobs = None
    if not isinstance(token_logprobs, list) or len(token_logprobs) < 2:
        return f"{url} returns no prompt log-probabilities (echo with logprobs), which lm-eval needs"
    return None


def _figure(name: str, values: list[float]) -> dict[str, Any]:
    binary = all(v in (0.0, 1.0) for v in values)
    value, ci = _share(int(sum(values)), len(values)) if binary else _mean(values)
    return {name: value, f"{name}_ci95": ci}


def task_scores(
    samples: list[dict[str, Any]], metrics: list[str], aggregated: dict[str, Any], averaged: set[str] | None = None
) -> dict[str, Any]:
    """One task's entry for ``scores.json``: ``n``, each metric with its 95% interval, and every item (by the row's
    ``id`` where it has one) with the choice it took and each choice's log-likelihood. A metric lm-eval aggregates
    as a mean over items (``averaged``; all of them when not given) gets a Wilson interval for right/wrong items
    and a bootstrap one otherwise; any other aggregation (a corpus F1) keeps lm-eval's figure and standard error.
    A task with several filters (lm-eval logs each item once per filter) names its figures ``metric,filter``."""
    filters = list(dict.fromkeys(str(s.get("filter", "none")) for s in samples)) or ["none"]
    items: dict[int, dict[str, Any]] = {}
    for sample in sorted(samples, key=lambda s: s["doc_id"]):
        doc = sample.get("doc")
        own_id = doc.get("id") if isinstance(doc, dict) else None
        item = items.setdefault(sample["doc_id"], {"id": str(sample["doc_id"] if own_id is None else own_id)})
        suffix = "" if len(filters) == 1 else f",{sample.get('filter', 'none')}"
        item.update({m + suffix: float(sample[m]) for m in metrics if _number(sample.get(m))})
        scored = [r[0] for r in sample.get("filtered_resps") or [] if isinstance(r, (list, tuple)) and _number(r[0])]
        arguments, target = sample.get("arguments") or [], sample.get("target")
        one_each = len(scored) == len(arguments) and "acc_mutual_info" not in sample.get("metrics", [])  # not 2 each
        if scored and one_each and isinstance(target, int) and 0 <= target < len(arguments):
            item["gold"] = str(arguments[target][1]).strip()
            item["chosen"] = str(arguments[scored.index(max(scored))][1]).strip()
            item["loglikelihoods"] = scored
    result: dict[str, Any] = {"n": len(items)}
    unreported = []
    for m in metrics:
        for f in filters:
            name = m if len(filters) == 1 else f"{m},{f}"
            values = [it[name] for it in items.values() if name in it]
            if items and len(values) == len(items) and (averaged is None or m in averaged):
                result.update(_figure(name, values))
                continue
            value, stderr = aggregated.get(f"{m},{f}"), aggregated.get(f"{m}_stderr,{f}")
            if _number(value) and _number(stderr):
                result[name], result[f"{name}_ci95"] = value, outward(value - Z95 * stderr, value + Z95 * stderr)
            else:
                unreported.append(name)
    if unreported:
        result["not_reported"] = f"no per-item values or standard error for {', '.join(unreported)}"
    return {**result, "items": list(items.values())}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def exam_tasks(
    exams: dict[str, list[dict[str, Any]]], data_dir: Path
) -> tuple[dict[str, Any], dict[str, int], dict[str, dict[str, Any]]]:
    """The shipped task for each exam with single-answer questions (written to ``data_dir``); per task how many
    multi-answer questions were left to EvalScope; and the entries of exams with none to score."""
    data_dir.mkdir(parents=True, exist_ok=True)
    tasks: dict[str, Any] = {}
    left: dict[str, int] = {}
    empty: dict[str, dict[str, Any]] = {}
    for exam, rows in exams.items():
        single, several = single_answer(rows)
        name = exam + LL_SUFFIX
        left[name] = several
        if not single:
            empty[name] = {"skipped": f"{exam} has no single-answer question to score by log-likelihood "
                                      f"({several} multi-answer, scored by EvalScope)"}  # fmt: skip
            continue
        data_file = data_dir / f"{exam}_single.jsonl"
        data_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in single), encoding="utf-8")
        tasks[name] = exam_task(exam, data_file)
    return tasks, left, empty


def user_tasks(paths: list[str]) -> dict[str, str]:
    """A team's own task YAMLs (each run as written; a relative path from the working directory), by their entry
    in scores.json: ``lm_eval_<task>``. A task named twice fails naming the file."""
    tasks: dict[str, str] = {}
    for given in paths:
        path = Path(given).expanduser().resolve()
        name = TEAM_PREFIX + task_name(path)
        if tasks.get(name) == str(path):  # the same file in the lane and in the run config
            continue
        if name in tasks:
            raise TaskError(f"{given}: task {name.removeprefix(TEAM_PREFIX)!r} is already in another task file")
        tasks[name] = str(path)
    return tasks


def run_tasks(
    tasks: dict[str, Any], target: dict[str, Any], optional: frozenset[str] = frozenset(), batch_size: int = 8
) -> dict[str, dict[str, Any]]:
    """Every task (entry -> a config dict, or the path of a YAML run as written, from its own folder) on the
    target: ``{"mode": "local", "model_dir", "torch_dtype"}`` (lm-eval's ``hf`` model, across the visible GPUs) or
    ``{"api_url", "model", "api_key", "tokenizer"}`` (its ``local-completions`` model; without a local tokenizer,
    the server's ``/tokenize`` or the model's name on the hub). Returns task name -> ``task_scores``; a task in
    ``optional`` that fails is skipped with the reason (a mirror's), any other fails naming its file."""
    import gc

    import torch
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    if target["mode"] == "local":
        from lm_eval.models.huggingface import HFLM

        model = HFLM(pretrained=target["model_dir"], dtype=target.get("torch_dtype", "auto"), batch_size=batch_size,
                     device="cuda" if torch.cuda.is_available() else "cpu",
                     parallelize=torch.cuda.device_count() > 1)  # fmt: skip
    else:
        from lm_eval.models.openai_completions import LocalCompletionsAPI

        model = LocalCompletionsAPI(
            base_url=target["api_url"].rstrip("/") + "/completions",
            model=target["model"],
            tokenizer=target.get("tokenizer"),
            tokenizer_backend="huggingface" if target.get("tokenizer") else "auto",
            num_concurrent=target.get("concurrency") or 1,
            max_retries=3,
            header={"Authorization": f"Bearer {target.get('api_key', 'EMPTY')}"},  # not OPENAI_API_KEY's
            auth_token=target.get("api_key"),  # what its check for the server's own tokenizer sends
        )
    results: dict[str, dict[str, Any]] = {}
    try:
        for name, spec in tasks.items():
            label = spec if isinstance(spec, str) else name
            task = task_name(Path(spec)) if isinstance(spec, str) else spec["task"]
            where = Path(spec).parent if isinstance(spec, str) else Path.cwd()
            try:
                with contextlib.chdir(where):  # relative data files resolve from the YAML's folder, as includes do
                    out = simple_evaluate(model=model, tasks=[spec], task_manager=TaskManager(include_defaults=False),
                                          log_samples=True, bootstrap_iters=1000)  # fmt: skip
            except Exception as exc:  # name the task file: lm-eval's own message rarely does
                if name in optional:
                    results[name] = {"skipped": f"{label}: lm-eval failed: {type(exc).__name__}: {exc}"[:500]}
                    continue
                raise TaskError(f"{label}: lm-eval failed: {type(exc).__name__}: {exc}") from exc
            if not out or task not in out["results"]:
                found = sorted(out["results"]) if out else []
                raise TaskError(f"{label}: lm-eval ran {found}, not the task {task!r}")
            metrics = list(dict.fromkeys(m for s in out["samples"][task] for m in s.get("metrics", [])))
            listed = out["configs"][task].get("metric_list") or []
            means = {m for m in metrics if all(x.get("aggregation", "mean") == "mean" for x in listed
                                               if x.get("metric") == m)}  # fmt: skip
            results[name] = task_scores(out["samples"][task], metrics, out["results"][task], means)
    finally:
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return results

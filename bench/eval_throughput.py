"""Benchmark: evaluation throughput and the tiny model's server (issue 11).

    .venv/bin/python bench/eval_throughput.py [--latency 0.2] [--concurrency 1 8 32] [--repeats 3] [--out DIR]

1. Questions/s of the real evaluation path (``mh_assets.runners.evaluate.generate``: EvalScope's OpenAI client) on
   the shipped ``pceb_mcq`` against a loopback OpenAI-compatible stub that answers each request after a fixed
   latency, at each concurrency (EvalScope's ``eval_batch_size``), with the peak of requests in flight the stub saw.
2. ``python -m mh_assets.serve tiny`` (``swift deploy``, transformers backend, CPU) on the tiny lane's latest merged
   model: seconds until ``/health`` answers; generated tokens/s of chat requests (temperature 1, a seed each); and
   ``pceb_mcq`` through EvalScope against it at each concurrency. The server is started ``--repeats`` times; each
   figure is the median run's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any

from mh_assets.benchmarks import SUITE, load_benchmark, mcq_scores, read_reviews, to_exam_qa
from mh_assets.procs import free_port, start_group, stop_group
from mh_assets.runners.evaluate import generate, model_kwargs, write_jsonl
from mh_assets.store import default_store
from mh_assets_tests.openai_stub import Gauge, openai_stub

EXAM = load_benchmark("pceb_mcq", SUITE["pceb_mcq"])
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def exam_rate(api_url: str, model: str, concurrency: int, max_tokens: int) -> dict[str, Any]:
    """``pceb_mcq`` through EvalScope against ``api_url``: wall time (EvalScope's set-up included), questions/s."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        write_jsonl(data / "pceb_mcq.jsonl", to_exam_qa(EXAM))
        kwargs = model_kwargs({"mode": "endpoint", "api_url": api_url, "model": model, "concurrency": concurrency})
        start = time.perf_counter()
        generate(data, ["pceb_mcq"], kwargs, max_tokens, Path(tmp) / "evalscope")
        seconds = time.perf_counter() - start
        reviews = read_reviews(Path(tmp) / "evalscope" / "reviews" / kwargs["model_id"] / "general_qa_pceb_mcq.jsonl")
        replies = [r["prediction"] for r in reviews]
    return {
        "concurrency": concurrency,
        "questions": len(replies),
        "unparsed": mcq_scores(EXAM, replies)["unparsed"],
        "seconds": round(seconds, 2),
        "questions_per_s": round(len(replies) / seconds, 2),
    }


def against_stub(latency_s: float, levels: list[int]) -> list[dict[str, Any]]:
    """The exam against the stub at each concurrency, with the peak in flight the stub counted."""
    rows = []
    for concurrency in levels:
        gauge = Gauge()
        with openai_stub(lambda _: "答案：A", latency_s=latency_s, gauge=gauge) as (url, _):
            row = exam_rate(url, "stub-model", concurrency, max_tokens=16)
        row |= {"peak_in_flight": gauge.peak, "ideal_questions_per_s": round(concurrency / latency_s, 2)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def _chat(base_url: str, model: str, content: str, seed: int) -> dict[str, Any]:
    """One chat completion's ``usage``, sampled (at temperature 0 the tiny model stops after one character)."""
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 256, "seed": seed}
    request = urllib.request.Request(
        f"{base_url}/chat/completions",
        data=json.dumps({**body, "temperature": 1.0}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with OPENER.open(request, timeout=300) as response:
        return json.loads(response.read())["usage"]


def token_rate(base_url: str, model: str, concurrency: int, requests: int = 32) -> dict[str, Any]:
    """``requests`` chat completions on the psyqa questions, ``concurrency`` at a time: generated tokens/s."""
    questions = [row["question"] for row in load_benchmark("psyqa", SUITE["psyqa"])]
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        usage = list(pool.map(lambda i: _chat(base_url, model, questions[i % len(questions)], i), range(requests)))
    seconds = time.perf_counter() - start
    tokens = sum(u["completion_tokens"] for u in usage)
    return {
        "concurrency": concurrency,
        "requests": requests,
        "completion_tokens": tokens,
        "mean_reply_tokens": round(tokens / requests, 1),
        "seconds": round(seconds, 2),
        "tokens_per_s": round(tokens / seconds, 1),
        "requests_per_s": round(requests / seconds, 2),
    }


def tiny_server(levels: list[int]) -> dict[str, Any]:
    """Start ``make serve``'s command for the tiny lane, time it to /health, measure, stop its process group."""
    from mh_assets.lane import load_lanes

    model = load_lanes()["tiny"].evaluation.served_model_name
    port = free_port()
    command = [sys.executable, "-m", "mh_assets.serve", "tiny", "--port", str(port)]
    start = time.perf_counter()
    server = start_group(command, os.environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"the server exited with code {server.returncode}")
            try:
                with OPENER.open(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.1)
        run: dict[str, Any] = {"startup_s": round(time.perf_counter() - start, 2)}
        base_url = f"http://127.0.0.1:{port}/v1"
        run["chat"] = [token_rate(base_url, model, c) for c in (1, 8)]
        run["pceb_mcq"] = [exam_rate(base_url, model, c, max_tokens=48) for c in levels]
    finally:
        stop_group(server)
    print(json.dumps(run), flush=True)
    return run


def median_run(rows: list[dict[str, Any]], key: str = "seconds") -> dict[str, Any]:
    """The run with the median ``key``, with every run's (the 2 cores here are shared: runs vary)."""
    ordered = sorted(rows, key=lambda r: r[key])
    return {**ordered[len(ordered) // 2], f"{key}_all_runs": [r[key] for r in rows]}


def tiny_server_runs(levels: list[int], repeats: int) -> dict[str, Any]:
    runs = [tiny_server(levels) for _ in range(repeats)]
    return {
        "command": "python -m mh_assets.serve tiny --port PORT",
        **median_run(runs, "startup_s"),
        "chat": [median_run([run["chat"][i] for run in runs]) for i in range(len(runs[0]["chat"]))],
        "pceb_mcq": [median_run([run["pceb_mcq"][i] for run in runs]) for i in range(len(levels))],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.2, help="the stub's seconds per request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=3, help="server runs; the median of each figure is kept")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    if default_store().latest("merged_model_tiny") is None:
        raise SystemExit("the tiny lane has no merged model: run `make demo` first")
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start",
        "packages": {name: version(name) for name in ("evalscope", "ms-swift", "torch", "transformers")},
        "questions": len(EXAM),
        "stub_latency_s": args.latency,
        "stub": against_stub(args.latency, args.concurrency),
        "swift_deploy_tiny_transformers_cpu": tiny_server_runs(args.concurrency, args.repeats),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"eval-throughput-{results['date']}.json"
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

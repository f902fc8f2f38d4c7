"""Benchmark: dataset_snapshot on synthetic conversations (streaming, memory, speed against a bare baseline).

    .venv/bin/python bench/snapshot_bench.py [--sizes 10000 100000] [--out bench/results]

Each measurement runs in a fresh child process so that peak RSS (ru_maxrss) is its own. The baseline only reads
each line, ``json.loads`` it and tokenizes its text in batches with the same tokenizer. Goals (issue 3): peak RSS at
100k / at 10k under 1.3; snapshot time under 2x the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mh_assets.snapshot import SAMPLE_DATASET

CHILD = r"""
import json, resource, sys, time, tempfile
from pathlib import Path
mode, path = sys.argv[1], Path(sys.argv[2])
from mh_assets.tiny_tokenizer import train_tokenizer
from mh_assets.snapshot import LengthPlan, build_snapshot
from mh_assets.lengths import LaneLengths
tokenizer = train_tokenizer()
start = time.perf_counter()
if mode == "snapshot":
    lanes = {"tiny": LaneLengths("tiny", 512), "7b": LaneLengths("tiny", 3072), "32b": LaneLengths("tiny", 4096)}
    plan = LengthPlan({"tiny": tokenizer}, lanes)
    out = Path(tempfile.mkdtemp())
    from mh_assets.benchmarks import SUITE, load_benchmark
    items = {name: load_benchmark(name, file) for name, file in SUITE.items()}  # decontamination, as in the asset
    manifest = build_snapshot(path, out, plan, eval_items=items)
    rows = manifest["rows_in"]
else:
    rows, batch = 0, []
    with path.open("rb") as fh:
        for raw in fh:
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            turns = obj.get("messages") or obj.get("conversations") or []
            batch.append("".join(t.get("content") or t.get("value") or "" for t in turns))
            rows += 1
            if len(batch) >= 1024:
                tokenizer.encode_batch(batch); batch = []
    tokenizer.encode_batch(batch)
elapsed = time.perf_counter() - start
peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rows": rows, "seconds": elapsed, "peak_rss_mib": peak_rss_mib}))
"""


def synthesize(n: int, path: Path, seed: int = 0) -> None:
    """``n`` conversations recombined from the shipped sample's turns; about 2% broken or duplicated lines."""
    rng = random.Random(seed)
    turns = []
    for raw in SAMPLE_DATASET.read_text(encoding="utf-8").split("\n"):
        if raw:
            record = json.loads(raw)
            turns += [t.get("content") or t.get("value") for t in record.get("messages") or record["conversations"]]
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            r = rng.random()
            if r < 0.01:
                fh.write("{not json\n")
                continue
            pairs = rng.randint(1, 4)
            messages = []
            for _ in range(pairs):
                messages += [
                    {"role": "user", "content": rng.choice(turns)},
                    {"role": "assistant", "content": rng.choice(turns)},
                ]
            if r > 0.99:
                messages = [{"role": "user", "content": "重复"}, {"role": "assistant", "content": "重复的回答"}]
            record = (
                {"messages": messages}
                if i % 2
                else {
                    "conversations": [
                        {"from": "human" if m["role"] == "user" else "gpt", "value": m["content"]} for m in messages
                    ]
                }
            )
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def measure(mode: str, path: Path, repeats: int) -> dict:
    """Fastest of ``repeats`` runs (each in a fresh process), and the largest peak RSS among them."""
    runs = []
    for _ in range(repeats):
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, mode, str(path)], capture_output=True, text=True, check=True
        )
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {"seconds": min(r["seconds"] for r in runs), "peak_rss_mib": max(r["peak_rss_mib"] for r in runs)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    results = {
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "repeats": args.repeats,
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            path = Path(tmp) / f"synthetic_{n}.jsonl"
            synthesize(n, path)
            snap, base = measure("snapshot", path, args.repeats), measure("baseline", path, args.repeats)
            run = {
                "conversations": n,
                "file_mib": round(path.stat().st_size / 2**20, 1),
                "snapshot_s": round(snap["seconds"], 2),
                "baseline_s": round(base["seconds"], 2),
                "conversations_per_s": round(n / snap["seconds"]),
                "time_vs_baseline": round(snap["seconds"] / base["seconds"], 2),
                "peak_rss_mib": round(snap["peak_rss_mib"], 1),
            }
            results["runs"].append(run)
            print(json.dumps(run))
    runs = {r["conversations"]: r for r in results["runs"]}
    if 10_000 in runs and 100_000 in runs:
        results["rss_ratio_100k_vs_10k"] = round(runs[100_000]["peak_rss_mib"] / runs[10_000]["peak_rss_mib"], 3)
        print("peak RSS ratio 100k/10k:", results["rss_ratio_100k_vs_10k"])
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d")
    (args.out / f"snapshot-{stamp}.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

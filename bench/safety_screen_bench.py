"""How well the deterministic safety screen separates harmful from safe replies it was not written from.

Reads reply sets (``{"id","family","critical","reply"}`` per line), screens every reply, and reports per set: recall
on harmful replies (share judged critical), critical false positives on safe ones, and both with Wilson 95%
intervals, plus screening speed. Writes ``bench/results/safety-screen-<date>.json``.

    .venv/bin/python bench/safety_screen_bench.py
"""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path

from mh_assets.safety import load_screen
from mh_assets.stats import wilson_interval

ROOT = Path(__file__).resolve().parent.parent
SETS = {
    "dev (tests)": ROOT / "mh_assets_tests" / "data" / "safety_replies_dev.jsonl",
    "holdout (bench only)": ROOT / "bench" / "data" / "safety_replies_holdout.jsonl",
}


def measure(path: Path) -> dict:
    screen = load_screen()
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    started = time.perf_counter()
    critical = [screen.verdict({}, r["reply"])["verdict"] == "critical" for r in rows]
    seconds = time.perf_counter() - started
    harmful = [c for r, c in zip(rows, critical, strict=True) if r["critical"]]
    safe = [c for r, c in zip(rows, critical, strict=True) if not r["critical"]]
    missed = [r["id"] for r, c in zip(rows, critical, strict=True) if r["critical"] and not c]
    flagged = [r["id"] for r, c in zip(rows, critical, strict=True) if not r["critical"] and c]
    return {
        "replies": len(rows),
        "recall": sum(harmful) / len(harmful),
        "recall_ci95": wilson_interval(sum(harmful), len(harmful)),
        "false_positive_rate": sum(safe) / len(safe),
        "false_positive_rate_ci95": wilson_interval(sum(safe), len(safe)),
        "missed": missed,
        "false_positives": flagged,
        "replies_per_second": len(rows) / seconds,
    }


def main() -> None:
    results = {name: measure(path) for name, path in SETS.items()}
    for name, r in results.items():
        lo, hi = r["recall_ci95"]
        flo, fhi = r["false_positive_rate_ci95"]
        speed = f"{r['replies_per_second']:.0f} replies/s"
        print(f"{name}: recall {r['recall']:.3f} (95% CI {lo:.3f}-{hi:.3f}), critical false positives "
              f"{r['false_positive_rate']:.3f} (95% CI {flo:.3f}-{fhi:.3f}), {speed}")  # fmt: skip
    out = ROOT / "bench" / "results" / f"safety-screen-{date.today().isoformat()}.json"
    out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"written {out}")


if __name__ == "__main__":
    main()

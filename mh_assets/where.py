"""Print where a lane's artifacts are and how to look at them: ``python -m mh_assets.where tiny``."""

from __future__ import annotations

import sys

from mh_assets.lanes import LANES
from mh_assets.store import artifacts_dir, latest


def main(size: str) -> None:
    lane = LANES[size]
    print(f"\nArtifacts of the {size} lane (under {artifacts_dir()}):")
    for label, name in [
        ("dataset snapshot", "dataset_snapshot"),
        ("LoRA adapter", lane.key("lora_adapter")),
        ("merged model", lane.key("merged_model")),
        ("scores", lane.key("benchmark_scores")),
        ("registry copy", f"registry/{lane.hub_repo_id}"),
        ("report", lane.key("experiment_report")),
    ]:
        print(f"  {label:<17} {latest(name) or 'not materialized'}")
    print("\nOpen the UI on them:  make ui   (then http://127.0.0.1:3000)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tiny")

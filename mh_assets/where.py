"""Print where a lane's artifacts are and how to look at them: ``python -m mh_assets.where tiny``."""

from __future__ import annotations

import sys

from mh_assets.lane import load_lanes
from mh_assets.store import default_store


def main(name: str) -> None:
    lane, store = load_lanes()[name], default_store()
    print(f"\nArtifacts of the {name} lane (under {store.location('').rstrip('/')}):")
    for label, key in [
        ("dataset snapshot", "dataset_snapshot"),
        ("LoRA adapter", lane.key("lora_adapter")),
        ("merged model", lane.key("merged_model")),
        ("scores", lane.key("benchmark_scores")),
        ("registry copy", f"registry/{lane.hub_repo_id}"),
        ("report", lane.key("experiment_report")),
    ]:
        version = store.latest_version(key)
        print(f"  {label:<17} {store.location(key, version) if version else 'not materialized'}")
    print("\nOpen the UI on them:  make ui   (then http://127.0.0.1:3000)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tiny")

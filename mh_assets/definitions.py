"""The code location: the shared dataset snapshot plus one lane of assets per model size."""

import os

import dagster as dg

from mh_assets.defs.data import (
    DATA_CHECKS,
    DatasetSourceResource,
    dataset_snapshot,
    dataset_source,
    dataset_source_schedule,
)
from mh_assets.defs.lanes import build_lane
from mh_assets.defs.resources import GpuResource, ProcessGroupPipesClient, SwanLabResource
from mh_assets.lanes import LANES

lane_assets, lane_checks = [], []
for _lane in LANES.values():
    _assets, _checks = build_lane(_lane)
    lane_assets += _assets
    lane_checks += _checks

lane_jobs = [
    dg.define_asset_job(
        f"{size}_lane",
        selection=dg.AssetSelection.assets(dataset_snapshot) | dg.AssetSelection.groups(lane.group),
        description=f"The whole {size} lane, from dataset snapshot to hub upload and report.",
        tags={"model_size": size},
    )
    for size, lane in LANES.items()
]

defs = dg.Definitions(
    assets=[dataset_source, dataset_snapshot, *lane_assets],
    asset_checks=[*DATA_CHECKS, *lane_checks],
    jobs=lane_jobs,
    schedules=[dataset_source_schedule],
    resources={
        "pipes": ProcessGroupPipesClient(),
        "dataset": DatasetSourceResource(source=os.environ.get("MH_DATASET_SOURCE", "")),
        "gpu": GpuResource(visible_devices=os.environ.get("MH_GPU_DEVICES")),
        "swanlab": SwanLabResource(
            mode=os.environ.get("MH_SWANLAB_MODE"),
            api_key=dg.EnvVar("SWANLAB_API_KEY") if os.environ.get("SWANLAB_API_KEY") else None,
        ),
    },
)

"""The code location: the shared dataset snapshot plus one lane of assets per model size."""

import os

import dagster as dg

from mh_assets.defs.data import (
    DATA_CHECKS,
    DatasetSourceResource,
    dataset_snapshot,
    dataset_source,
    observe_sources_schedule,
)
from mh_assets.defs.evaluation import EvalResource, eval_suite, reevaluate_job, reevaluate_schedule
from mh_assets.defs.lanes import build_lane
from mh_assets.defs.resources import GpuResource, HubResource, ProcessGroupPipesClient, SwanLabResource
from mh_assets.lanes import LANES


def _secret(name: str) -> dg.EnvVar | None:
    """A secret read from the environment (or .env) at run time; None when unset, so the code location loads."""
    return dg.EnvVar(name) if os.environ.get(name) else None


lane_assets, lane_checks = [], []
for _lane in LANES.values():
    _assets, _checks = build_lane(_lane)
    lane_assets += _assets
    lane_checks += _checks

# Declarative automation (eager snapshots and re-evaluation, opt-in publishing) runs as soon as the daemon does.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluates the assets' automation conditions (on by default: `make ui` automates with no clicks).",
)

lane_jobs = [
    dg.define_asset_job(
        f"{size}_lane",
        # the sources are observed in the same run, so a lane run leaves them observed
        selection=dg.AssetSelection.keys(dataset_source.key, eval_suite.key, dataset_snapshot.key)
        | dg.AssetSelection.groups(lane.group),
        description=f"The whole {size} lane, from dataset snapshot to hub upload and report.",
        tags={"model_size": size},
    )
    for size, lane in LANES.items()
]

defs = dg.Definitions(
    assets=[dataset_source, eval_suite, dataset_snapshot, *lane_assets],
    asset_checks=[*DATA_CHECKS, *lane_checks],
    jobs=[*lane_jobs, reevaluate_job],
    schedules=[observe_sources_schedule, reevaluate_schedule],
    sensors=[automation_sensor],
    resources={
        "pipes": ProcessGroupPipesClient(),
        "dataset": DatasetSourceResource(source=os.environ.get("MH_DATASET_SOURCE", "")),
        "gpu": GpuResource(visible_devices=os.environ.get("MH_GPU_DEVICES")),
        "evaluation": EvalResource(
            judge_url=os.environ.get("MH_JUDGE_URL", ""),
            judge_model=os.environ.get("MH_JUDGE_MODEL", ""),
            judge_api_key=_secret("MH_JUDGE_API_KEY"),
            safety_judge_url=os.environ.get("MH_SAFETY_JUDGE_URL", ""),
            safety_judge_models=os.environ.get("MH_SAFETY_JUDGE_MODELS", ""),
            safety_judge_samples=int(os.environ.get("MH_SAFETY_JUDGE_SAMPLES", "2")),
            safety_judge_api_key=_secret("MH_SAFETY_JUDGE_API_KEY"),
            endpoint_api_key=_secret("MH_EVAL_API_KEY"),
            ceval_path=os.environ.get("MH_CEVAL_PATH", ""),
            cmmlu_path=os.environ.get("MH_CMMLU_PATH", ""),
            safetybench_path=os.environ.get("MH_SAFETYBENCH_PATH", ""),
        ),
        "hub": HubResource(
            modelscope_token=_secret("MODELSCOPE_API_TOKEN"),
            hf_token=_secret("HF_TOKEN"),
            modelscope_endpoint=os.environ.get("MODELSCOPE_ENDPOINT"),
            hf_endpoint=os.environ.get("HF_ENDPOINT"),
        ),
        "swanlab": SwanLabResource(
            mode=os.environ.get("MH_SWANLAB_MODE"),
            api_key=_secret("SWANLAB_API_KEY"),
        ),
    },
)

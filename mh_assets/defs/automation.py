"""Automation: the sensor that evaluates every asset's automation condition (on by default, so `make ui`
automates with no clicks), and jobs to observe the sources and to re-evaluate every lane by hand."""

import dagster as dg

from mh_assets.defs.data import SOURCE
from mh_assets.defs.evaluation import EVAL_SUITE

automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation_sensor",
    target=dg.AssetSelection.all(include_sources=True),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Observes the sources every 15 minutes, snapshots a changed dataset, evaluates a new model or "
    "suite, re-evaluates on each lane's cron; publishes only lanes opted in with MH_AUTO_PUBLISH.",
)

reevaluate = dg.define_asset_job(
    "reevaluate",
    selection=dg.AssetSelection.from_string('key:"benchmark_scores_*"'),
    description="Evaluate every lane's merged model again now (automation does it on each lane's cron).",
)

observe_sources = dg.define_asset_job(
    "observe_sources",
    selection=dg.AssetSelection.assets(SOURCE, EVAL_SUITE),
    description="Look at the dataset source and the evaluation suite now (automation does it every 15 minutes).",
)

"""Automation: the sensor that evaluates every asset's automation condition (on by default, so `make ui`
automates with no clicks), and a job to re-evaluate every lane by hand."""

import dagster as dg

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

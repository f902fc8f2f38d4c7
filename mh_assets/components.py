"""``LaneComponent``: one lane's whole graph from one YAML file (``mh_assets/defs/lanes/<folder>/defs.yaml``).

Copy a lane folder, change ``name`` and ``base_model``, and the new lane (assets ``<stage>_<name>``, its checks and
its ``<name>_lane`` job) loads with no Python edited. ``dg list components`` lists it; ``dg check defs`` names the
file, line and field of a mistake.
"""

import dagster as dg

from mh_assets.defs.data import SNAPSHOT, SOURCE, base_model_asset
from mh_assets.defs.evaluation import EVAL_SUITE, base_scores_asset, benchmark_scores_asset, gate_checks
from mh_assets.defs.publishing import experiment_report_asset, hub_upload_asset, safety_review_asset
from mh_assets.defs.training import lora_adapter_asset, merged_model_asset, training_env_asset, training_env_checks
from mh_assets.lane import Lane


class LaneComponent(Lane, dg.Component, dg.Resolvable):
    """A base model taken through the whole graph: base model, training environment, LoRA adapter, merged model,
    base and fine-tuned scores with their gates, safety review, hub upload and experiment report."""

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        lane: Lane = self  # the component is the lane its file describes (validated when the file was read)
        builders = (
            base_model_asset,
            training_env_asset,
            lora_adapter_asset,
            merged_model_asset,
            base_scores_asset,
            benchmark_scores_asset,
            safety_review_asset,
            hub_upload_asset,
            experiment_report_asset,
        )
        job = dg.define_asset_job(
            f"{lane.name}_lane",
            # the sources are observed in the same run, so a lane run leaves them observed
            selection=dg.AssetSelection.assets(SOURCE, EVAL_SUITE, SNAPSHOT) | dg.AssetSelection.groups(lane.group),
            description=f"The whole {lane.name} lane, from dataset snapshot to hub upload and report.",
            tags={"lane": lane.name},
        )
        return dg.Definitions(
            assets=[build(lane) for build in builders],
            asset_checks=[*training_env_checks(lane), *gate_checks(lane)],
            jobs=[job],
        )

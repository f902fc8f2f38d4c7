"""The Dagster wiring: thin modules over the plain ones in ``mh_assets``."""

import warnings

import dagster as dg

# observable_source_asset is "beta" in Dagster 1.13; a notice on every load tells our users nothing
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*observable_source_asset.*")
# raised inside Dagster when load_from_defs_folder merges the folders' asset checks, not by anything we call
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*`execution_type`.*")

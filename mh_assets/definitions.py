"""The code location: every definition under ``mh_assets/defs`` (lanes are YAML components in ``defs/lanes``)."""

from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)

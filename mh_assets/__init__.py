"""mh-assets: the Chinese mental-health counselling model runbook as a Dagster asset graph."""

from mh_assets.definitions import defs

__all__ = ["defs"]

"""Every asset's key, deps, group, kinds, tags, pool, checks and automation condition, as a reviewed snapshot:
any change to the graph shows as a diff of ``__snapshots__/test_graph_spec.ambr`` (update it with
``pytest mh_assets_tests/test_graph_spec.py --snapshot-update`` and review the diff)."""

from typing import Any

import dagster as dg

from mh_assets import defs


def _condition(condition: dg.AutomationCondition | None) -> Any:
    if condition is None:
        return None
    name = condition.get_label() or condition.name
    children = [_condition(child) for child in condition.children]
    return {name: children} if children else name


def graph_spec() -> dict[str, Any]:
    graph = defs.resolve_asset_graph()
    checks: dict[str, list[str]] = {}
    for checks_def in defs.asset_checks or []:
        for spec in checks_def.check_specs:
            kind = "blocking" if spec.blocking else "warn"
            checks.setdefault(spec.asset_key.to_user_string(), []).append(f"{spec.name} ({kind})")
    spec = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        name = key.to_user_string()
        spec[name] = {
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "tags": {k: v for k, v in sorted(node.tags.items()) if not k.startswith("dagster/kind/")},
            "pool": node.assets_def.op.pool if node.assets_def.is_executable else None,
            "observable": node.is_observable,
            "checks": sorted(checks.get(name, [])),
            "automation": _condition(node.automation_condition),
        }
    return spec


def test_graph_matches_the_reviewed_snapshot(snapshot):
    assert graph_spec() == snapshot

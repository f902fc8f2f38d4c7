"""Lanes are YAML components: a copied lane folder is a whole new lane with no Python edited, and a wrong field
fails with the file, the line and the field."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mh_assets.lane import STAGES, load_lane, load_lanes
from mh_assets.recipes import RECIPES
from mh_assets.yamlio import YamlError
from mh_assets_tests.conftest import REPO

BIN = Path(sys.executable).parent
LIST_DEFS = """
import json
from mh_assets import defs
graph = defs.resolve_asset_graph()
print(json.dumps({
    "keys": sorted(k.to_user_string() for k in graph.get_all_asset_keys()),
    "groups": {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()},
    "jobs": sorted(j.name for j in defs.jobs),
    "checks": sorted(f"{c.asset_key.to_user_string()}:{c.name}" for c in graph.asset_check_keys),
}))
"""


def _project_copy(tmp_path: Path) -> Path:
    """The project (package and pyproject.toml) copied, so its lane folders can be changed freely."""
    root = tmp_path / "project"
    shutil.copytree(REPO / "mh_assets", root / "mh_assets", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def _env(root: Path) -> dict[str, str]:
    # the copy comes first on the path: it, not the installed package, is what loads
    path = os.pathsep.join([str(root), os.environ.get("PATH", "")])
    return {**os.environ, "PYTHONPATH": str(root), "PATH": f"{BIN}{os.pathsep}{path}", "VIRTUAL_ENV": str(BIN.parent)}


def _new_lane(root: Path, folder: str, replace: dict[str, str]) -> Path:
    text = (root / "mh_assets/defs/lanes/7b/defs.yaml").read_text(encoding="utf-8")
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    path = root / "mh_assets/defs/lanes" / folder / "defs.yaml"
    path.parent.mkdir()
    path.write_text(text, encoding="utf-8")
    return path


def test_a_copied_lane_folder_is_a_whole_lane(tmp_path: Path):
    root = _project_copy(tmp_path)
    _new_lane(root, "qwen3_8b", {"name: 7b": "name: qwen3_8b", "Qwen/Qwen2.5-7B-Instruct": "Qwen/Qwen3-8B"})
    proc = subprocess.run(
        [sys.executable, "-c", LIST_DEFS], cwd=root, env=_env(root), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {f"{stage}_qwen3_8b" for stage in STAGES} <= set(found["keys"])
    assert {f"{stage}_{lane}" for stage in STAGES for lane in ("tiny", "7b", "32b")} <= set(found["keys"])
    assert all(found["groups"][f"{stage}_qwen3_8b"] == "model_qwen3_8b" for stage in STAGES)
    assert "qwen3_8b_lane" in found["jobs"]
    assert {
        "training_env_qwen3_8b:flash_attn_available",
        "benchmark_scores_qwen3_8b:meets_minimums",
        "benchmark_scores_qwen3_8b:no_regression",
        "benchmark_scores_qwen3_8b:safety_gate",
    } <= set(found["checks"])


def test_dg_check_defs_names_the_file_and_field_of_a_mistake(tmp_path: Path):
    root = _project_copy(tmp_path)
    env = _env(root)
    ok = subprocess.run([str(BIN / "dg"), "check", "defs"], cwd=root, env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    bad = _new_lane(root, "broken", {"name: 7b": "name: broken", "count: 1": "count: two"})
    proc = subprocess.run([str(BIN / "dg"), "check", "defs"], cwd=root, env=env, capture_output=True, text=True)
    output = " ".join((proc.stdout + proc.stderr).replace("│", " ").split())
    assert proc.returncode != 0
    assert "gpu" in output and "count" in output and "valid integer" in output
    assert f"{bad.parent.name}/defs.yaml:" in output


def test_load_lane_names_file_line_and_field(tmp_path: Path):
    text = (REPO / "mh_assets/defs/lanes/32b/defs.yaml").read_text(encoding="utf-8")
    path = tmp_path / "defs.yaml"
    path.write_text(text.replace("max_length: 4096", "max_lenght: 4096"), encoding="utf-8")
    line = text.split("\n").index("    max_length: 4096") + 1
    with pytest.raises(YamlError, match=rf"defs.yaml:{line}: attributes.recipe.max_lenght: Extra inputs"):
        load_lane(path)
    path.write_text(text.replace("base: runbook_7b", "base: runbook_70b"), encoding="utf-8")
    with pytest.raises(YamlError, match=r"attributes.recipe.base: .*unknown recipe 'runbook_70b'"):
        load_lane(path)
    path.write_text(text.replace("name: 32b", "name: 32B"), encoding="utf-8")
    with pytest.raises(YamlError, match=r"attributes.name: .*lower case"):
        load_lane(path)


def test_a_lane_states_only_how_its_recipe_differs():
    lanes = load_lanes()
    assert lanes["7b"].sft == RECIPES["runbook_7b"]
    assert lanes["32b"].sft == RECIPES["runbook_7b"].with_overrides(
        per_device_train_batch_size=2, gradient_accumulation_steps=8, max_length=4096
    )
    assert lanes["tiny"].sft == RECIPES["tiny_cpu"]


def test_a_null_override_clears_the_named_recipes_value(tmp_path: Path):
    """`attn_impl: null` (with packing off) means: no flash attention, not "keep the runbook's"."""
    text = (REPO / "mh_assets/defs/lanes/7b/defs.yaml").read_text(encoding="utf-8")
    path = tmp_path / "defs.yaml"
    path.write_text(text.replace("base: runbook_7b", "base: runbook_7b\n    attn_impl: null\n    packing: false"))
    recipe = load_lane(path).sft
    assert recipe.attn_impl is None and recipe.packing is False and not recipe.needs_flash_attn
    assert recipe.max_length == RECIPES["runbook_7b"].max_length  # what the file leaves out is the named recipe's


def test_the_component_builds_the_same_recipe_as_the_lane_file():
    """What trains (the code version of lora_adapter_<lane>) is the recipe the lane file states, for every lane."""
    import dataclasses

    import dagster as dg

    from mh_assets import defs
    from mh_assets.defs.common import settings_digest

    for name, lane in load_lanes().items():
        key = dg.AssetKey(f"lora_adapter_{name}")
        assert defs.resolve_assets_def(key).code_versions_by_key[key] == settings_digest(dataclasses.asdict(lane.sft))

"""Recipes render the runbook's values as ms-swift 4 flags, for every lane."""

import dataclasses
import subprocess

import pytest

from mh_assets.lane import load_lanes
from mh_assets.recipes import Launch, MergeRun, SftRun, shell_lines


def _flags(args: list[str]) -> dict[str, list[str]]:
    flags: dict[str, list[str]] = {}
    name = None
    for arg in args:
        if arg.startswith("--"):
            name = arg[2:]
            flags[name] = []
        else:
            flags[name].append(arg)
    return flags


def _run(size: str, **kw) -> dict[str, list[str]]:
    recipe = load_lanes()[size].sft
    return _flags(SftRun(model="/m", dataset="/d.jsonl", output_dir="/o", recipe=recipe, **kw).to_args())


RUNBOOK = {
    "7b": {"per_device_train_batch_size": "8", "gradient_accumulation_steps": "4", "max_length": "3072"},
    "32b": {"per_device_train_batch_size": "2", "gradient_accumulation_steps": "8", "max_length": "4096"},
}


@pytest.mark.parametrize("size", ["7b", "32b"])
def test_gpu_lanes_follow_the_runbook(size):
    flags = _run(size)
    expected = {
        "tuner_type": "lora",
        "model_type": "qwen2",
        "template": "qwen2_5",
        "num_train_epochs": "1",
        "learning_rate": "0.0002",
        "packing": "true",
        "attn_impl": "flash_attn",
        "torch_dtype": "bfloat16",
        "gradient_checkpointing": "true",
        "save_steps": "200",
        "save_total_limit": "3",
        "logging_steps": "20",
        **RUNBOOK[size],
    }
    assert {k: flags[k][0] for k in expected} == expected
    assert flags["target_modules"] == ["all-linear"]
    assert load_lanes()[size].base_model == f"Qwen/Qwen2.5-{size.upper()}-Instruct"
    assert load_lanes()[size].swanlab.exp_name == f"mh-sft-qwen2p5-{size}-lora"
    assert load_lanes()[size].sft.needs_flash_attn and load_lanes()[size].sft.needs_bf16


def test_tiny_lane_trains_on_cpu():
    flags = _run("tiny")
    assert flags["torch_dtype"] == ["float32"] and flags["packing"] == ["false"]
    assert "attn_impl" not in flags and flags["gradient_checkpointing"] == ["false"]
    recipe = load_lanes()["tiny"].sft
    assert not recipe.needs_flash_attn and not recipe.needs_bf16 and recipe.num_train_epochs > 1


def test_swanlab_flags_only_for_modes_swift_accepts():
    local = _run("7b", report_to="swanlab", swanlab_project="mh-sft", swanlab_exp_name="e", swanlab_mode="local")
    assert local["report_to"] == ["swanlab"] and local["swanlab_mode"] == ["local"]
    offline = _run("7b", report_to="swanlab", swanlab_project="mh-sft", swanlab_exp_name="e", swanlab_mode="offline")
    assert "swanlab_mode" not in offline and offline["swanlab_project"] == ["mh-sft"]
    assert not any(k.endswith(("token", "key", "secret")) for k in local)  # no secret ever on a command line


def test_every_flag_is_a_swift_argument():
    """Every flag we render is a field of ms-swift's own argument dataclasses (names mirror the CLI)."""
    from swift import ExportArguments, SftArguments

    sft_fields = {f.name for f in dataclasses.fields(SftArguments)}
    for size in load_lanes():
        flags = _run(
            size,
            report_to="swanlab",
            swanlab_project="p",
            swanlab_exp_name="e",
            swanlab_mode="cloud",
            resume_from_checkpoint="/o/checkpoint-1",
        )
        assert set(flags) <= sft_fields, set(flags) - sft_fields
    export_fields = {f.name for f in dataclasses.fields(ExportArguments)}
    merge = _flags(MergeRun(adapters="/a", output_dir="/o", device_map="cpu").to_args())
    assert set(merge) <= export_fields
    assert merge["max_shard_size"] == ["2GB"] and merge["merge_lora"] == ["true"]


def test_cli_line_reproduces_the_run():
    run = SftRun(model="/m", dataset="/d.jsonl", output_dir="/o", recipe=load_lanes()["7b"].sft)
    assert run.to_cli("0").startswith("CUDA_VISIBLE_DEVICES=0 swift sft --model /m --dataset /d.jsonl")
    assert "--packing true" in run.to_cli()


def test_overrides_replace_only_what_is_given():
    recipe = load_lanes()["7b"].sft.with_overrides(learning_rate=1e-4, max_length=None)
    assert recipe.learning_rate == 1e-4 and recipe.max_length == 3072


@pytest.mark.parametrize("lane", ["tiny", "7b", "32b"])
def test_shell_lines_is_the_same_command_for_bash(lane):
    run = SftRun(model="/models/m", dataset="/data/a b/train.jsonl", output_dir="/o", recipe=load_lanes()[lane].sft)
    command = run.to_cli("0,1", Launch(2, 1, "127.0.0.1", 29500))
    shown = shell_lines(command)
    assert len(shown.splitlines()) > 10 and max(map(len, shown.splitlines())) < 80
    argv = subprocess.run(  # bash reads the shown lines; a function stands in for swift and prints what it got
        ["bash", "-c", 'f() { printf "%s\\0" "$@"; }; ' + shown.replace("swift sft", "f swift sft", 1)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")[:-1]
    assert argv == ["swift", "sft", *run.to_args()]

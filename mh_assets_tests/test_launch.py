"""Training on every GPU: the commands rendered for 1, 2 and 8 GPUs (and two nodes) parse with ms-swift's own
argument classes and torchrun's own parser, and keep the runbook's global batch."""

import shlex
from pathlib import Path

import pytest

from mh_assets.lane import LANES_DIR, Lane, load_lane, load_lanes
from mh_assets.recipes import SftRun
from mh_assets.yamlio import YamlError

LANES = load_lanes()


def _lane(name: str, **gpu) -> Lane:
    data = LANES[name].model_dump(exclude_unset=True)
    return Lane.model_validate({**data, "gpu": {**data.get("gpu", {}), **gpu}})


@pytest.fixture(scope="module")
def parsers():
    """ms-swift's parser of ``swift sft`` flags (argparse level: flags, types, choices; no model is loaded) and
    torchrun's parser, fed what ``swift``'s CLI hands torchrun for the same environment."""
    from swift import SftArguments
    from swift.utils.utils import _patch_get_type_hints
    from torch.distributed.run import get_args_parser
    from transformers import HfArgumentParser

    with _patch_get_type_hints():
        sft = HfArgumentParser([SftArguments])
    return sft, get_args_parser()


def _parse(command: str, parsers, monkeypatch) -> tuple[dict[str, str], object, object | None]:
    """``(environment, swift's namespace, torchrun's namespace or None)`` of one rendered command line."""
    from swift.cli.main import get_torchrun_args

    words = shlex.split(command)
    env = dict(w.split("=", 1) for w in words[: words.index("swift")])
    assert words[words.index("swift") + 1] == "sft"
    args = words[words.index("swift") + 2 :]
    for key in ("NPROC_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    torchrun = get_torchrun_args()
    sft, torchrun_parser = parsers
    return env, sft.parse_args(args), torchrun_parser.parse_args([*torchrun, "sft.py"]) if torchrun else None


def _command(lane: Lane, node_rank: int = 0) -> str:
    run = SftRun(model="/m", dataset="/d.jsonl", output_dir="/o", recipe=lane.sft)
    return run.to_cli(",".join(map(str, range(max(lane.gpu.count, 1)))), lane.gpu.launch("10.0.0.1", 29511), node_rank)


@pytest.mark.parametrize("gpus", [1, 2, 8])
@pytest.mark.parametrize("name", ["7b", "32b"])
def test_gpu_counts_render_commands_that_swift_and_torchrun_parse(name, gpus, parsers, monkeypatch):
    lane = _lane(name, count=gpus)
    env, ns, torchrun = _parse(_command(lane), parsers, monkeypatch)
    assert env["CUDA_VISIBLE_DEVICES"] == ",".join(map(str, range(gpus)))
    if gpus == 1:
        assert "NPROC_PER_NODE" not in env and torchrun is None  # one process, no torchrun
    else:
        assert torchrun.nproc_per_node == str(gpus) and torchrun.nnodes == "1:1"
    written = LANES[name].sft
    assert ns.per_device_train_batch_size * ns.gradient_accumulation_steps * gpus == written.global_batch_size
    assert ns.deepspeed is None and ns.packing and ns.learning_rate == written.learning_rate


def test_deepspeed_stage_is_a_flag_swift_accepts(parsers, monkeypatch):
    lane = _lane("32b", count=8)
    zero3 = Lane.model_validate(
        {**lane.model_dump(exclude_unset=True), "recipe": {"base": "runbook_7b", "deepspeed": "zero3"}}
    )
    _, ns, _ = _parse(_command(zero3), parsers, monkeypatch)
    assert ns.deepspeed == "zero3"
    assert "--deepspeed" not in _command(lane)  # none: plain DDP


def test_two_nodes_render_one_command_per_node_for_torchrun(parsers, monkeypatch):
    lane = _lane("7b", count=8, nodes=2)
    for rank in (0, 1):
        env, ns, torchrun = _parse(_command(lane, rank), parsers, monkeypatch)
        assert (torchrun.nnodes, torchrun.node_rank, torchrun.master_addr, torchrun.master_port) == (
            "2",
            rank,
            "10.0.0.1",
            29511,
        )
        assert torchrun.nproc_per_node == "8"
        assert ns.per_device_train_batch_size * ns.gradient_accumulation_steps * 16 == 32


def test_a_batch_that_does_not_split_over_the_gpus_is_refused_naming_the_file(tmp_path: Path):
    text = (LANES_DIR / "7b" / "defs.yaml").read_text(encoding="utf-8").replace("count: 1", "count: 3")
    path = tmp_path / "defs.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(YamlError, match=r"defs\.yaml.*cannot be split evenly over 3 GPUs"):
        load_lane(path)


def test_more_gpus_than_the_batch_needs_take_smaller_shares():
    recipe = LANES["7b"].sft  # 8 per device x 4 accumulation
    assert (
        recipe.for_world_size(8).per_device_train_batch_size,
        recipe.for_world_size(8).gradient_accumulation_steps,
    ) == (4, 1)
    assert recipe.for_world_size(4).gradient_accumulation_steps == 1
    assert recipe.for_world_size(2).gradient_accumulation_steps == 2

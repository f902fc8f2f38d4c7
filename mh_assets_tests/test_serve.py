"""``make serve`` / ``python -m mh_assets.serve``: the lane's latest merged model, its backend, on loopback."""

from pathlib import Path

import pytest

from mh_assets.serve import main


def _merged(artifacts: Path, lane: str) -> Path:
    version = artifacts / f"merged_model_{lane}" / "v1"
    version.mkdir(parents=True)
    (artifacts / f"merged_model_{lane}" / "latest").symlink_to("v1")
    return version


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["tiny"], "--infer_backend transformers --served_model_name mh-sft-tiny"),  # a CPU lane
        (["7b"], "--infer_backend vllm --served_model_name mh-sft-7b"),  # a GPU lane
        (["7b", "--backend", "sglang", "--port", "9001"], "--infer_backend sglang"),
    ],
)
def test_the_command_serves_the_latest_merged_model_on_loopback(argv, expected, artifacts: Path, capsys):
    version = _merged(artifacts, argv[0])
    main([*argv, "--dry-run"])
    command = capsys.readouterr().out.strip()
    assert f"-m swift.cli.deploy --model {version} " in command and expected in command
    assert "--host 127.0.0.1 --port " + ("9001" if "9001" in argv else "8000") in command
    # transformers answers one request at a time unless told to batch as many as evaluation sends
    assert ("--max_batch_size 32" in command) == ("transformers" in expected)


def test_a_lane_without_a_merged_model_says_what_is_missing(artifacts: Path):
    with pytest.raises(SystemExit, match="merged_model_tiny has not been materialized"):
        main(["tiny", "--dry-run"])

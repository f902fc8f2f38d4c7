"""Serve a lane's latest merged model with ``swift deploy`` on 127.0.0.1 (OpenAI API, ``/v1``):
``python -m mh_assets.serve tiny [--port 8000] [--backend transformers] [--dry-run]`` (``make serve LANE=tiny``).

The backend is the lane's (vLLM on a GPU lane, transformers on a CPU one, unless its file names one). The command
is printed, then this process becomes the server (Ctrl-C stops it). Plain module: no dagster, no torch.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from mh_assets.lane import load_lanes
from mh_assets.procs import child_env, inherited_env
from mh_assets.store import MissingUpstream, default_store


def deploy_command(
    *,
    model_dir: str | Path,
    backend: str,
    served_model_name: str,
    model_type: str,
    template: str,
    torch_dtype: str,
    port: int,
    concurrency: int,
) -> list[str]:
    """``swift deploy`` on 127.0.0.1 as one process (the ``swift`` wrapper would re-exec a child); ``model_type`` and
    ``template`` because a base model folder has no args.json to tell swift (the tiny one is ambiguous without).
    The transformers backend answers ``max_batch_size`` requests at once (swift's default: 1), so it is the number
    of requests the evaluation keeps in flight; vLLM, SGLang and LMDeploy batch whatever arrives."""
    batch = ["--max_batch_size", str(concurrency)] if backend == "transformers" else []
    return [
        sys.executable, "-m", "swift.cli.deploy",
        "--model", str(model_dir),
        "--infer_backend", backend,
        "--served_model_name", served_model_name,
        "--model_type", model_type,
        "--template", template,
        "--torch_dtype", torch_dtype,
        "--host", "127.0.0.1",
        "--port", str(port),
        *batch,
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mh_assets.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("lane")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--backend", help="transformers | vllm | sglang | lmdeploy; default: the lane's")
    parser.add_argument("--dry-run", action="store_true", help="print the command, start nothing")
    args = parser.parse_args(argv)
    lanes = load_lanes()
    if args.lane not in lanes:
        sys.exit(f"unknown lane {args.lane!r} (known: {', '.join(sorted(lanes))})")
    lane, store = lanes[args.lane], default_store()
    try:
        model_dir = store.require(lane.key("merged_model"))
    except MissingUpstream as exc:
        sys.exit(str(exc))
    command = deploy_command(
        model_dir=model_dir,
        backend=args.backend or lane.evaluation.backend(lane.gpu.count),
        served_model_name=lane.evaluation.served_model_name,
        model_type=lane.sft.model_type,
        template=lane.sft.template,
        torch_dtype=lane.evaluation.torch_dtype,
        port=args.port,
        concurrency=lane.evaluation.concurrency or lane.evaluation.default_concurrency("service"),
    )
    print(shlex.join(command), flush=True)
    if args.dry_run:
        return
    # the lane's GPUs as its steps see them (MH_GPU_DEVICES, else the lane file's); a CPU lane sees none
    devices = os.environ.get("MH_GPU_DEVICES", lane.gpu.default_devices) if lane.gpu.count > 0 else ""
    print(f"OpenAI API: http://127.0.0.1:{args.port}/v1 (model {lane.evaluation.served_model_name})", flush=True)
    os.execve(command[0], command, {**inherited_env(), **child_env(devices, store.root)})


if __name__ == "__main__":
    main()

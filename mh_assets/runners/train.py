"""Child process: LoRA SFT through the ``swift sft`` CLI, streaming progress back over Dagster Pipes.

Extras: ``args`` (the ``swift sft`` flags) and ``output_dir`` (the run folder). The environment carries the launch
(NPROC_PER_NODE and, across machines, NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT: swift then starts torchrun) and,
when SwanLab reports, ``MH_SWANLAB_RUN`` for the ``trainer_process`` plugin. Every line ms-swift appends to
``logging.jsonl`` becomes a log message in the step's event log while training runs.

swift and torchrun start in this process's group; a SIGTERM here (from the step, or from the kernel when the step's
process dies) stops that whole group, so no trainer outlives its step.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path
from typing import IO, Any

from mh_assets.checkpoints import training_lock
from mh_assets.swiftlog import Progress, parse_logging

POLL_S = 1.0
SWANLAB_INFO = "swanlab.json"


def _stop_group(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.killpg(0, signal.SIGTERM)


def _echo(stream: IO[str], tail: deque[str]) -> None:
    """Pass swift's output on (it is the step's stdout) and keep its last lines for an error message."""
    for line in iter(stream.readline, ""):
        sys.stdout.write(line)
        sys.stdout.flush()
        tail.append(line.rstrip())


def train(args: list[str], run: Path, log: Any) -> int:
    """Run ``swift sft`` to the end, logging progress as it goes; its exit code."""
    progress = Progress(run / "logging.jsonl")
    tail: deque[str] = deque(maxlen=20)
    (run / SWANLAB_INFO).unlink(missing_ok=True)  # an earlier attempt's run
    proc = subprocess.Popen(
        [sys.executable, "-m", "swift.cli.main", "sft", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    echo = threading.Thread(target=_echo, args=(proc.stdout, tail), daemon=True)
    echo.start()
    announced = False
    while True:
        try:
            returncode = proc.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            returncode = None
        if not announced and (run / SWANLAB_INFO).exists():
            announced = True
            info = swanlab_info(run)
            log.info(f"SwanLab run {info.get('swanlab_url') or info.get('swanlab_run_dir') or info}")
        for message in progress.read():
            log.info(message)
        if returncode is not None:
            break
    echo.join(timeout=10)
    if returncode != 0:
        errors = [line for line in tail if "error" in line.lower()] or list(tail)[-5:]
        raise RuntimeError(f"swift sft exited with code {returncode}: " + " | ".join(errors[-5:]))
    return returncode


def swanlab_info(run: Path) -> dict[str, Any]:
    cfg = json.loads(os.environ["MH_SWANLAB_RUN"]) if "MH_SWANLAB_RUN" in os.environ else None
    if cfg is None:
        return {"swanlab_mode": "disabled"}
    info_file = run / SWANLAB_INFO
    started = json.loads(info_file.read_text(encoding="utf-8")) if info_file.exists() else {}
    return {
        "swanlab_project": cfg["project"],
        "swanlab_experiment": cfg["exp_name"],
        "swanlab_mode": cfg["mode"],
        "swanlab_log_dir": cfg["log_dir"],
        **started,
    }


def main() -> None:
    from mh_assets.runners import child_pipes

    signal.signal(signal.SIGTERM, _stop_group)
    with child_pipes() as pipes:
        run = Path(pipes.get_extra("output_dir"))
        launch = {k: os.environ[k] for k in ("NPROC_PER_NODE", "NNODES", "NODE_RANK") if k in os.environ}
        pipes.log.info(f"swift sft in {run}" + (f" with torchrun {launch}" if launch else ", one process"))
        with training_lock(run):
            train(list(pipes.get_extra("args")), run, pipes.log)
        log = parse_logging(run / "logging.jsonl")
        pipes.log.info(f"loss {log.first_loss} -> {log.last_loss} in {log.steps} steps")
        metadata = {**log.figures(), **swanlab_info(run)}
        pipes.report_asset_materialization(metadata={k: v for k, v in metadata.items() if v is not None})


if __name__ == "__main__":
    main()

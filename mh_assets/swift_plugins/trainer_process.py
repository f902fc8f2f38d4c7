"""An ms-swift ``--external_plugins`` file, imported by every training process while swift parses its arguments.

- A torchrun worker runs in a session of its own, out of reach of the step's process group: it asks the kernel for
  SIGKILL when its parent (torchrun) dies, so no worker keeps a GPU after its step was stopped.
- On rank 0 it starts the SwanLab run in any mode (cloud, local, offline, disabled; swift's own callback knows only
  cloud and local) from ``MH_SWANLAB_RUN`` (JSON: mode, project, exp_name, log_dir, config, info_file); swift's
  callback then logs into that run. The run's id, folder and (cloud) link go to ``info_file`` for the metadata.

It sits alone in its folder because swift puts the folder on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1
SWANLAB_MODES = {"cloud": "online", "local": "local", "offline": "offline", "disabled": "disabled"}


def start_swanlab() -> None:
    cfg = json.loads(os.environ["MH_SWANLAB_RUN"])
    import swanlab

    run = swanlab.init(
        project=cfg["project"],
        name=cfg["exp_name"],
        mode=SWANLAB_MODES[cfg["mode"]],
        log_dir=cfg["log_dir"],
        config=cfg.get("config") or {},
    )
    info = {"swanlab_run_id": getattr(run, "id", None), "swanlab_run_dir": str(getattr(run, "dir", "") or "")}
    if cfg["mode"] == "cloud":
        info["swanlab_url"] = run.url
    target = Path(cfg["info_file"])
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(info), encoding="utf-8")
    os.replace(tmp, target)  # the runner polls for it: never let it read half a file


def die_with_parent() -> None:
    import ctypes
    import signal

    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


if "LOCAL_RANK" in os.environ:  # started by torchrun
    die_with_parent()
if "MH_SWANLAB_RUN" in os.environ and os.environ.get("RANK", "0") == "0":
    start_swanlab()

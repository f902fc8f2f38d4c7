"""An ms-swift ``--external_plugins`` file: starts the SwanLab run in the training process itself.

swift's own callback knows only the cloud and local modes and starts its run late; this file is imported by every
training process while swift parses its arguments, and on rank 0 starts the run in any mode (cloud, local, offline,
disabled) from ``MH_SWANLAB_RUN`` (JSON: mode, project, exp_name, log_dir, config, info_file). swift's callback
then logs into that run. The run's id, folder and (cloud) link go to ``info_file`` for the step's metadata.
It sits alone in its folder because swift puts the folder on ``sys.path``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

SWANLAB_MODES = {"cloud": "online", "local": "local", "offline": "offline", "disabled": "disabled"}


def start() -> None:
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


if "MH_SWANLAB_RUN" in os.environ and os.environ.get("RANK", "0") == "0":
    start()

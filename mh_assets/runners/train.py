"""Child process: LoRA SFT through ms-swift, reporting figures back over Dagster Pipes.

Extras: ``args`` (the ``swift sft`` flags), ``output_dir``, and ``swanlab`` (``mode``, ``project``,
``exp_name``, ``log_dir``, ``config``) or ``None``. The SwanLab run is started here, before ``sft_main``, so that
offline/disabled modes work too (swift's callback reuses the active run) and its id can be reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mh_assets.swiftlog import parse_logging

SWANLAB_MODES = {"cloud": "online", "local": "local", "offline": "offline", "disabled": "disabled"}


def start_swanlab(cfg: dict[str, Any]) -> dict[str, Any]:
    import swanlab

    run = swanlab.init(
        project=cfg["project"],
        name=cfg["exp_name"],
        mode=SWANLAB_MODES[cfg["mode"]],
        log_dir=cfg["log_dir"],
        config=cfg.get("config") or {},
    )
    info = {
        "swanlab_project": cfg["project"],
        "swanlab_experiment": cfg["exp_name"],
        "swanlab_mode": cfg["mode"],
        "swanlab_log_dir": cfg["log_dir"],
        "swanlab_run_id": getattr(run, "id", None),
    }
    if cfg["mode"] == "cloud":
        info["swanlab_url"] = run.url
    return info


def main() -> None:
    from mh_assets.runners import child_pipes

    with child_pipes() as pipes:
        swanlab_cfg = pipes.extras.get("swanlab")
        info = start_swanlab(swanlab_cfg) if swanlab_cfg else {"swanlab_mode": "disabled"}
        from swift import sft_main

        sft_main(list(pipes.get_extra("args")))
        if swanlab_cfg:
            import swanlab

            swanlab.finish()
        log = parse_logging(Path(pipes.get_extra("output_dir")) / "logging.jsonl")
        pipes.log.info(f"loss {log.first_loss} -> {log.last_loss} in {log.steps} steps")
        metadata = {**log.figures(), **info}
        pipes.report_asset_materialization(metadata={k: v for k, v in metadata.items() if v is not None})


if __name__ == "__main__":
    main()

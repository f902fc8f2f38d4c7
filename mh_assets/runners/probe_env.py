"""Child process: record what the training environment offers (torch, CUDA, GPUs, bf16, flash-attn).

Runs with the lane's ``CUDA_VISIBLE_DEVICES``, so it sees exactly the GPUs that training will see.
Reports the facts as JSON metadata and writes them to ``extras["output_file"]``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from pathlib import Path
from typing import Any


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def probe() -> dict[str, Any]:
    import torch

    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            with torch.cuda.device(i):
                bf16 = bool(torch.cuda.is_bf16_supported())
            gpus.append(
                {
                    "index": i,
                    "name": props.name,
                    "capability": [props.major, props.minor],
                    "memory_gib": round(props.total_memory / 2**30, 1),
                    "bf16": bf16,
                }
            )
    flash: dict[str, Any] = {"version": _version("flash-attn") or _version("flash_attn")}
    try:
        from flash_attn import flash_attn_varlen_func  # noqa: F401  (the CUDA kernel packing needs)

        flash["kernel_ok"] = True
    except Exception as exc:  # ImportError, or an undefined-symbol OSError from a mismatched build
        flash.update(kernel_ok=False, error=f"{type(exc).__name__}: {exc}")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "gpus": gpus,
        "flash_attn": flash,
        "packages": {d: _version(d) for d in ("ms-swift", "transformers", "peft", "evalscope", "swanlab", "deepspeed")},
    }


def main() -> None:
    from mh_assets.runners import child_pipes

    with child_pipes() as pipes:
        facts = probe()
        Path(pipes.get_extra("output_file")).write_text(json.dumps(facts, indent=2), encoding="utf-8")
        pipes.report_asset_materialization(
            metadata={
                "facts": {"raw_value": facts, "type": "json"},
                "torch": facts["torch"],
                "gpu_count": len(facts["gpus"]),
                "flash_attn_kernel": bool(facts["flash_attn"].get("kernel_ok")),
            }
        )


if __name__ == "__main__":
    main()

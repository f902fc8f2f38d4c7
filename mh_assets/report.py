"""The experiment report the runbook leaves to be filled by hand, generated. Plain module."""

from __future__ import annotations

from typing import Any

from mh_assets.benchmarks import comparison_rows, comparison_table
from mh_assets.lanes import Lane
from mh_assets.recipes import flags


def experiment_report(
    lane: Lane,
    snapshot: dict[str, Any],
    training: dict[str, Any],
    scores: dict[str, Any],
    base: dict[str, Any] | None,
    gate_lines: list[str],
    facts: dict[str, Any],
) -> str:
    recipe = "\n".join(f"| {name} | {' '.join(values)} |" for name, values in flags(lane.recipe))
    gpus = ", ".join(g["name"] for g in facts.get("gpus", [])) or "none (CPU)"
    swanlab = training.get("swanlab_url") or training.get("swanlab_log_dir") or "disabled"
    return f"""# Experiment report: {lane.swanlab_exp_name}

## Overview
LoRA SFT of `{lane.base_model}` (lane `{lane.size}`) on dataset snapshot `{snapshot["sha256"][:16]}`.

## Environment
torch {facts.get("torch")}, CUDA {facts.get("torch_cuda") or "none"}, GPUs: {gpus},
flash-attn: {"yes" if facts.get("flash_attn", {}).get("kernel_ok") else "no"}.

## Data
{snapshot["rows_kept"]} conversations kept of {snapshot["rows_in"]} ({snapshot["rows_quarantined"]} quarantined),
schemas {snapshot["schemas"]}.

## Recipe
| flag | value |
|---|---|
{recipe}

```
{training.get("command")}
```

## Training
loss {training.get("first_loss")} -> {training.get("last_loss")} over {training.get("steps")} steps,
{training.get("train_runtime_s")} s.
SwanLab ({training.get("swanlab_mode")}): {swanlab}, run {training.get("swanlab_run_id")}.

## Results
{comparison_table(comparison_rows(scores, base))}

Gates: {"; ".join(gate_lines)}
"""

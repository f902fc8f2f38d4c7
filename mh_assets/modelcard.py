"""The model card (``README.md``) published with a merged model. Plain module: no dagster, no torch."""

from __future__ import annotations

from typing import Any

from mh_assets.benchmarks import comparison_rows, comparison_table
from mh_assets.lanes import Lane

INTENDED_USE = (
    "A supportive-conversation aid for Chinese mental-health counselling research and practice. It is not a "
    "substitute for professional care. Anyone in crisis should contact local emergency services or a crisis line "
    "(mainland China: 全国心理援助热线 400-161-9995; 北京心理危机研究与干预中心 010-82951332)."
)


def model_card(lane: Lane, scores: dict[str, Any], base: dict[str, Any] | None, training: dict[str, Any]) -> str:
    return f"""---
language:
- zh
base_model: {lane.base_model}
library_name: transformers
tags:
- mental-health
- counselling
- lora
- ms-swift
---

# {lane.served_model_name}

LoRA fine-tune of `{lane.base_model}` (revision `{lane.revision}`) on Chinese mental-health counselling
conversations, merged into the base model. The base model's licence applies to this model.

## Training
- final loss: {training.get("last_loss")} (first: {training.get("first_loss")}), steps: {training.get("steps")}
- command: `{training.get("command")}`

## Evaluation
{comparison_table(comparison_rows(scores, base))}

## Intended use and limits
{INTENDED_USE}

## How to run
```
swift deploy --model . --infer_backend transformers --served_model_name {lane.served_model_name} \\
    --host 127.0.0.1 --port 8000
```
"""

"""The model card (``README.md`` with YAML front matter the hubs read) published with a merged model. Plain module."""

from __future__ import annotations

from collections import Counter
from typing import Any

from mh_assets.benchmarks import comparison_rows, comparison_table
from mh_assets.lanes import Lane
from mh_assets.recipes import flags

CRISIS_RESOURCES = (
    "If you or someone you know is in danger, contact local emergency services. Mainland China: 全国心理援助热线 "
    "400-161-9995, 北京心理危机研究与干预中心 010-82951332, emergency 120 / police 110."
)
INTENDED_USE = (
    "A supportive-conversation aid for research and for trained counsellors in Chinese mental-health settings. It is "
    "not a substitute for professional care, diagnosis or treatment, and must not be the only support offered to a "
    "person at risk. " + CRISIS_RESOURCES
)


# the model card's example, kept as text (it runs on the reader's machine, not here)
TRANSFORMERS_SNIPPET = "\n".join(
    [
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        'tokenizer = AutoTokenizer.from_pretrained(".")',
        'model = AutoModelForCausalLM.from_pretrained(".", dtype="auto", device_map="auto")',
        'messages = [{"role": "user", "content": "我最近压力很大，睡不着。"}]',
        "inputs = tokenizer.apply_chat_template(",
        '    messages, add_generation_prompt=True, return_tensors="pt", return_dict=True',
        ").to(model.device)",
        'reply = model.generate(**inputs, max_new_tokens=256)[0][inputs["input_ids"].shape[1] :]',
        "print(tokenizer.decode(reply, skip_special_tokens=True))",
    ]
)


def safety_summary(scores: dict[str, Any]) -> str:
    safety = scores.get("benchmarks", {}).get("safety") or {}
    if not safety.get("probes"):
        return "Safety probes were not run."
    total: Counter[str] = Counter(p["category"] for p in safety["probes"])
    passed: Counter[str] = Counter(p["category"] for p in safety["probes"] if p["passed"])
    lines = [f"Pass rate {safety['pass_rate']:.1%} over {safety['n']} crisis and risk probes.", "",
             "| category | passed | probes |", "|---|---:|---:|"]  # fmt: skip
    lines += [f"| {c} | {passed[c]} | {n} |" for c, n in sorted(total.items())]
    return "\n".join(lines)


def model_card(
    lane: Lane,
    version: str,
    scores: dict[str, Any],
    base: dict[str, Any] | None,
    training: dict[str, Any],
    snapshot: dict[str, Any],
) -> str:
    recipe = "\n".join(f"| `{name}` | {' '.join(values)} |" for name, values in flags(lane.recipe))
    swanlab = training.get("swanlab_url") or f"{training.get('swanlab_mode')} run {training.get('swanlab_run_id')}"
    return f"""---
language:
- zh
license: other
base_model: {lane.base_model}
library_name: transformers
pipeline_tag: text-generation
tags:
- mental-health
- counselling
- lora
- ms-swift
---

# {lane.served_model_name}

LoRA fine-tune of `{lane.base_model}` (revision `{lane.revision}`), merged into the base model, for supportive
Chinese counselling conversations. Model version `{version}`.

**Licence.** This model is a derivative of `{lane.base_model}`; the base model's licence and use policy apply to it
in full. Read them before use.

## Data
Dataset snapshot `{snapshot["sha256"][:16]}` (sha256 `{snapshot["sha256"]}`) from `{snapshot["source"]}`:
{snapshot["rows_kept"]} conversations kept of {snapshot["rows_in"]} ({snapshot["rows_quarantined"]} quarantined).

## Training recipe (ms-swift)
| flag | value |
|---|---|
{recipe}

Final loss {training.get("last_loss")} (first {training.get("first_loss")}) after {training.get("steps")} steps.
SwanLab: {swanlab}.

## Evaluation (fine-tuned vs base)
{comparison_table(comparison_rows(scores, base))}

## Safety
{safety_summary(scores)}

## Intended use and limits
{INTENDED_USE}

## How to run
```
swift deploy --model . --infer_backend transformers --served_model_name {lane.served_model_name} \\
    --host 127.0.0.1 --port 8000
```

```python
{TRANSFORMERS_SNIPPET}
```
"""

"""The model card (``README.md`` with YAML front matter the hubs read) published with a merged model. Plain module."""

from __future__ import annotations

from typing import Any

from mh_assets.benchmarks import comparison_rows, comparison_table
from mh_assets.lane import Lane
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
    """The safety verdicts for people: the figures with intervals, then critical replies first, then failed ones,
    each with its reasons, then the verdicts per category."""
    safety = scores.get("benchmarks", {}).get("safety") or {}
    if not safety.get("probes"):
        return "Safety probes were not run."
    lo, hi = safety["pass_rate_ci95"]
    rlo, rhi = safety["referral_rate_ci95"]
    judge = safety.get("judge")
    lines = [
        f"Pass rate {safety['pass_rate']:.1%} (95% CI {lo:.1%}-{hi:.1%}) over {safety['n']} crisis and risk probes; "
        f"**{safety['critical']} critical**, {safety['failed']} failed. Referral rate {safety['referral_rate']:.1%} "
        f"(95% CI {rlo:.1%}-{rhi:.1%}), a diagnostic only: a referral never makes a harmful reply pass.",
        "",
        "Verdicts: "
        + (
            f"the rule screen ({safety['screen']['rules']} rules) and the safety judge ({', '.join(judge['judges'])}, "
            f"{judge['raters']} raters, agreement {judge['agreement']}, kappa {judge['kappa']}, "
            f"{judge['unreadable']} unreadable); the stricter verdict stands."
            if judge
            else f"the rule screen only ({safety['screen']['rules']} rules); no safety judge ran."
        ),
        "",
        "| verdict | probe | category | reasons | reply |",
        "|---|---|---|---|---|",
    ]
    order = {"critical": 0, "fail": 1}
    for p in sorted((p for p in safety["probes"] if p["verdict"] != "pass"), key=lambda p: order[p["verdict"]]):
        judged = [j["verdict"] for j in p.get("judge") or [] if j.get("verdict") and j["verdict"] != "pass"]
        reasons = ", ".join(p["rules"] + ([f"judge: {'/'.join(sorted(set(judged)))}"] if judged else []))
        reply = p.get("reply", "").replace("|", "/").replace("\n", " ")[:120]
        lines.append(f"| **{p['verdict']}** | {p['id']} | {p['category']} | {reasons} | {reply} |")
    lines += ["", "| category | probes | pass | fail | critical |", "|---|---:|---:|---:|---:|"]
    for category, cell in sorted(safety["by_category"].items()):
        lines.append(f"| {category} | {cell['n']} | {cell['pass']} | {cell['fail']} | {cell['critical']} |")
    return "\n".join(lines)


def model_card(
    lane: Lane,
    version: str,
    scores: dict[str, Any],
    base: dict[str, Any] | None,
    training: dict[str, Any],
    snapshot: dict[str, Any],
) -> str:
    recipe = "\n".join(f"| `{name}` | {' '.join(values)} |" for name, values in flags(lane.sft))
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

# {lane.evaluation.served_model_name}

LoRA fine-tune of `{lane.base_model}` (revision `{lane.revision}`), merged into the base model, for supportive
Chinese counselling conversations. Model version `{version}`.

**Licence.** This model is a derivative of `{lane.base_model}`; the base model's licence and use policy apply to it
in full. Read them before use.

## Data
Dataset snapshot `{snapshot["id"]}` (sha256 of `train.jsonl` then `val.jsonl`: `{snapshot["sha256"]}`)
from `{snapshot["source"]}`: {snapshot["rows_kept"]} conversations kept of {snapshot["rows_in"]}
({snapshot["rows_quarantined"]} quarantined); {snapshot.get("rows_val", 0)} of them held out for validation.

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
swift deploy --model . --infer_backend {lane.evaluation.backend(lane.gpu.count)} \\
    --served_model_name {lane.evaluation.served_model_name} --host 127.0.0.1 --port 8000
```

```python
{TRANSFORMERS_SNIPPET}
```
"""

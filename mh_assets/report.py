"""The experiment report the runbook leaves "to be filled", generated from a lane's artifacts. Plain module."""

from __future__ import annotations

import base64
import html
from collections import Counter
from dataclasses import dataclass
from typing import Any

from mh_assets.benchmarks import comparison_rows, comparison_table
from mh_assets.lane import Lane
from mh_assets.loglik import LL_SUFFIX
from mh_assets.modelcard import safety_summary
from mh_assets.recipes import flags, shell_lines


@dataclass
class ReportInputs:
    lane: Lane
    snapshot: dict[str, Any]  # the dataset manifest
    training: dict[str, Any]  # lora_adapter summary.json
    losses: list[tuple[int, float]]
    val_losses: list[tuple[int, float]]
    facts: dict[str, Any]  # training_env facts.json
    scores: dict[str, Any]
    base: dict[str, Any] | None
    gate_lines: list[str]
    gates_passed: bool
    merge_command: str
    merged_path: str


def svg_data_uri(svg: str) -> str:
    """An image that renders wherever the text goes (the Dagster UI, a copied report): no relative link to break."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def loss_svg(
    losses: list[tuple[int, float]],
    val_losses: list[tuple[int, float]] | None = None,
    width: int = 640,
    height: int = 240,
) -> str:
    """The training loss (blue) and the validation loss on val.jsonl (orange, when measured) over the steps, as a
    small SVG line chart (no plotting library needed)."""
    val_losses = val_losses or []
    if len(losses) < 2:
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"></svg>'
    pad = 40
    steps = [s for s, _ in losses]
    values = [v for _, v in (*losses, *val_losses)]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0

    def xy(step: int, value: float) -> tuple[float, float]:
        x = pad + (step - steps[0]) / ((steps[-1] - steps[0]) or 1) * (width - 2 * pad)
        return x, height - pad - (value - lo) / span * (height - 2 * pad)

    def polyline(series: list[tuple[int, float]], colour: str) -> str:
        points = " ".join("{:.1f},{:.1f}".format(*xy(s, v)) for s, v in series)
        return f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>'

    lines, legend = polyline(losses, "#2f6fdf"), "training loss"
    if val_losses:
        lines += polyline(val_losses, "#e07b00") + "".join(
            '<circle cx="{:.1f}" cy="{:.1f}" r="3" fill="#e07b00"/>'.format(*xy(s, v)) for s, v in val_losses
        )
        legend += f", validation loss (orange, {val_losses[0][1]:.3f} → {val_losses[-1][1]:.3f})"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        f'font-size="12"><rect width="100%" height="100%" fill="white"/>{lines}'
        f'<text x="{pad}" y="{pad - 10}">{legend}; top {hi:.3f}</text>'
        f'<text x="{pad}" y="{height - 10}">step {steps[0]} … {steps[-1]}, bottom {lo:.3f}</text></svg>'
    )


def known_issues(inputs: ReportInputs) -> list[str]:
    """What this run met that a reader should know about."""
    issues = []
    snapshot = inputs.snapshot
    if snapshot["rows_quarantined"]:
        issues.append(f"{snapshot['rows_quarantined']} dataset rows quarantined: {snapshot['quarantine_reasons']}")
    for kind, found in snapshot.get("pii", {}).items():
        issues.append(f"personal data in kept rows: {kind} x{found['count']}")
    overlap = snapshot.get("eval_overlap") or {}
    if overlap.get("found"):
        listed = ", ".join(f"{f['benchmark']}/{f['id']} (“{f['run']}”)" for f in overlap["found"])
        issues.append(
            f"{overlap['overlapping']} of {overlap['items']} evaluation items share a {overlap['n']}-character run "
            f"with the training data: {listed}"
        )
    for name, stats in snapshot.get("token_lengths", {}).items():
        if "stand-in" in stats["tokenizer"] and name == inputs.lane.name:
            issues.append(f"token lengths counted with the {stats['tokenizer']}")
        if name == inputs.lane.name and stats["over_max_length"]:
            issues.append(f"{stats['over_max_length']} conversations exceed max_length {stats['max_length']}")
    for name, result in inputs.scores.get("benchmarks", {}).items():
        if result.get("skipped"):
            issues.append(f"{name} skipped: {result['skipped']}")
        if result.get("unreadable"):
            issues.append(f"{name}: the judge's reply could not be read {result['unreadable']} time(s)")
    if inputs.base is None:
        issues.append("no base-model scores: the comparison and the regression gate have nothing to compare with")
    if not inputs.gates_passed:
        issues.append("the publication gates failed: " + "; ".join(inputs.gate_lines))
    if inputs.training.get("swanlab_mode") in (None, "disabled"):
        issues.append("SwanLab reporting was disabled")
    return issues or ["none"]


def _dialogues(inputs: ReportInputs) -> str:
    base = {s["question"]: s["answer"] for s in (inputs.base or {}).get("samples", [])}
    parts = []
    for sample in inputs.scores.get("samples", []):
        before = base.get(sample["question"], "(not evaluated)").strip() or "(empty reply)"
        after = sample["answer"].strip() or "(empty reply)"
        parts.append(f"**来访者：** {sample['question']}\n\n- base: {before}\n- fine-tuned: {after}")
    return "\n\n".join(parts) or "No sample dialogues were recorded."


def _with_ci(result: dict[str, Any], figure: str) -> str:
    if result.get("skipped"):
        return "skipped"
    if figure not in result:
        return "-"
    ci = result.get(f"{figure}_ci95")
    return f"{result[figure]:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _favourite(result: dict[str, Any]) -> str:
    chosen = Counter(it["chosen"] for it in result.get("items", []) if it.get("chosen"))
    if not chosen:
        return ""
    letter, count = chosen.most_common(1)[0]
    return f"{letter} ({count} of {sum(chosen.values())})"


def exam_evaluators(scores: dict[str, Any], base: dict[str, Any] | None) -> str:
    """Each exam as both evaluators scored it, side by side, and how they differ."""
    tuned, before = scores.get("benchmarks", {}), (base or {}).get("benchmarks", {})
    exams = sorted(name.removesuffix(LL_SUFFIX) for name in tuned if name.endswith(LL_SUFFIX))
    exams = [exam for exam in exams if exam in tuned]
    if not exams:
        return "No exam was scored by both evaluators."
    lines = [
        "| exam | evaluator | questions | fine-tuned [95% CI] | base [95% CI] | most chosen (fine-tuned / base) |",
        "|---|---|---:|---:|---:|---|",
    ]
    notes = []
    for exam in exams:
        ll = exam + LL_SUFFIX
        lines.append(f"| {exam} | EvalScope: the letter read from the reply (exact match) | {tuned[exam].get('n', 0)} "
                     f"| {_with_ci(tuned[exam], 'exact_match')} | {_with_ci(before.get(exam, {}), 'exact_match')} "
                     f"| |")  # fmt: skip
        lines.append(f"| {exam} | lm-eval: the likeliest answer letter (acc) | {tuned[ll].get('n', 0)} "
                     f"| {_with_ci(tuned[ll], 'acc')} | {_with_ci(before.get(ll, {}), 'acc')} "
                     f"| {_favourite(tuned[ll])} / {_favourite(before.get(ll, {}))} |")  # fmt: skip
        several = (tuned[ll].get("left_to_evalscope") or {}).get("multi_answer_questions")
        if several:
            notes.append(f"{exam}: {several} multi-answer question(s) are scored by EvalScope only")
        if tuned[ll].get("skipped"):
            notes.append(f"{ll} skipped: {tuned[ll]['skipped']}")
    return "\n".join(lines) + (
        "\n\nEvalScope asks for an answer and reads the letter the model writes: a reply without a readable letter "
        "scores 0 (its `unparsed` share). lm-eval (the runbook's scheme A) reads no reply: it compares the "
        "log-likelihood the model gives each answer letter after the question and takes the likeliest, so every "
        "question gets an answer and chance is one in the number of choices; a model that prefers one letter "
        "whatever the question scores that letter's share of the key. One likeliest letter cannot answer a question "
        "with several right answers" + (": " + "; ".join(notes) if notes else "") + "."
    )


def experiment_report(inputs: ReportInputs) -> str:
    lane, snapshot, training, facts = inputs.lane, inputs.snapshot, inputs.training, inputs.facts
    gpus = ", ".join(f"{g['name']} ({g['memory_gib']} GiB)" for g in facts.get("gpus", [])) or "none (CPU)"
    flash = facts.get("flash_attn", {})
    flash_text = f"kernel imports ({flash.get('version')})" if flash.get("kernel_ok") else "not available"
    packages = ", ".join(f"{k} {v}" for k, v in sorted(facts.get("packages", {}).items()) if v)
    lengths = snapshot.get("token_lengths", {}).get(lane.name, {})
    tokenizer = lengths.get("tokenizer")
    recipe = "\n".join(f"| `{name}` | {' '.join(values)} |" for name, values in flags(lane.sft))
    swanlab = training.get("swanlab_url") or (
        f"{training.get('swanlab_mode')} mode, run `{training.get('swanlab_run_id')}`, logs in "
        f"`{training.get('swanlab_log_dir')}` (`swanlab watch {training.get('swanlab_log_dir')} -h 127.0.0.1`)"
    )
    verdict = "passed" if inputs.gates_passed else "FAILED"
    deploy = (
        f"swift deploy --model {inputs.merged_path} --infer_backend {lane.evaluation.backend(lane.gpu.count)} "
        f"--served_model_name {lane.evaluation.served_model_name} --host 127.0.0.1 --port 8000"
    )
    return f"""# Experiment report: {lane.swanlab.exp_name}

## Overview
LoRA SFT of `{lane.base_model}` (revision `{lane.revision}`, lane `{lane.name}`) on dataset snapshot
`{snapshot["id"]}` (the sha256 of its `train.jsonl` then `val.jsonl`, the data version: `{snapshot["sha256"]}`).
Final training loss {training.get("last_loss")} after {training.get("steps")} steps.
Publication gates: **{verdict}**.

## Environment
- torch {facts.get("torch")}, CUDA {facts.get("torch_cuda") or "none"}, Python {facts.get("python")}
- GPUs: {gpus}; flash-attn: {flash_text}
- packages: {packages}

## Data
| figure | value |
|---|---|
| source | `{snapshot["source"]}` (revision {snapshot.get("revision") or "-"}) |
| conversations kept / in | {snapshot["rows_kept"]} / {snapshot["rows_in"]} |
| held out for validation (val.jsonl) | {snapshot.get("rows_val", 0)} |
| quarantined | {snapshot["rows_quarantined"]} {snapshot["quarantine_reasons"] or ""} |
| schemas | {snapshot["schemas"]} |
| turns per conversation | {snapshot["turns_per_conversation"]} |
| tokens p50 / p95 / max | {lengths.get("p50")} / {lengths.get("p95")} / {lengths.get("max")} ({tokenizer}) |
| over max_length {lengths.get("max_length")} | {lengths.get("over_max_length")} |

## Recipe
| flag | value |
|---|---|
{recipe}

Equivalent commands:
```
{shell_lines(training.get("command") or "")}

{shell_lines(inputs.merge_command)}

{shell_lines(deploy)}
```

## Training
![training loss]({svg_data_uri(loss_svg(inputs.losses, inputs.val_losses))})

Loss {training.get("first_loss")} → {training.get("last_loss")} over {training.get("steps")} steps in
{training.get("train_runtime_s")} s ({training.get("train_samples_per_second")} samples/s).
SwanLab: {swanlab}.

## Results
{comparison_table(comparison_rows(inputs.scores, inputs.base))}

Gates ({verdict}): {"; ".join(inputs.gate_lines)}

### The exam by both evaluators
{exam_evaluators(inputs.scores, inputs.base)}

## Sample dialogues
{_dialogues(inputs)}

## Safety probes
{safety_summary(inputs.scores)}

## Known issues met in this run
{chr(10).join("- " + issue for issue in known_issues(inputs))}
"""


def to_html(markdown_text: str, title: str) -> str:
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables", "fenced_code"])
    return (
        f'<!doctype html><html lang="zh"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        "<style>body{font-family:sans-serif;max-width:60rem;margin:2rem auto;line-height:1.5}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2rem .5rem}"
        "pre{background:#f5f5f5;padding:.5rem;overflow-x:auto}</style></head>"
        f"<body>{body}</body></html>"
    )

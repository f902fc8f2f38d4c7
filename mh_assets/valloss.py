"""Validation loss: a model's teacher-forced loss on held-out conversations, on the assistant turns only, encoded
by the lane's ms-swift chat template exactly as training encodes them; one figure per conversation, so a base and a
fine-tuned model are compared conversation by conversation. Plain module: torch, transformers and swift are
imported inside the function that needs them."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from mh_assets.stats import bootstrap_interval, outward


def conversation_id(messages: list[dict[str, str]]) -> str:
    """A conversation's id: the hash of its messages, the same in the snapshot and in every model's scores."""
    return hashlib.sha256(json.dumps(messages, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:12]


def val_set_hash(rows: list[dict[str, Any]], template: str, max_length: int) -> str:
    """What decides a validation loss besides the model: its conversations (ids, in order) and how they are encoded."""
    ids = " ".join(conversation_id(r["messages"]) for r in rows)
    return hashlib.sha256(f"{template} {max_length} {ids}".encode()).hexdigest()[:12]


def conversation_losses(
    model_dir: str, rows: list[dict[str, Any]], model_type: str, template: str, max_length: int, torch_dtype: str
) -> list[dict[str, Any]]:
    """Each conversation's mean loss per assistant token (``{"id", "loss", "tokens"}``). A conversation longer
    than ``max_length`` gets ``tokens: 0`` and no loss: training drops it too (swift's ``truncation_strategy``
    ``delete``). The model is freed, GPU memory included, before this returns (a server starts next)."""
    import gc

    import torch
    from swift import get_processor, get_template
    from swift.template import MaxLengthError
    from transformers import AutoModelForCausalLM

    processor = get_processor(model_dir, model_type=model_type, download_model=False)
    encoder = get_template(processor, template_type=template, max_length=max_length, truncation_strategy="raise")
    encoder.set_mode("train")
    dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    model = AutoModelForCausalLM.from_pretrained(
        model_dir,
        dtype=dtype.get(torch_dtype, "auto"),
        device_map="auto" if torch.cuda.is_available() else None,
    ).eval()

    def score(model: Any, row: dict[str, Any]) -> dict[str, Any]:
        item: dict[str, Any] = {"id": conversation_id(row["messages"]), "tokens": 0}
        try:
            encoded = encoder.encode({"messages": row["messages"]})
        except MaxLengthError:
            return item
        device = next(model.parameters()).device
        labels = torch.tensor(encoded["labels"][1:], device=device)
        item["tokens"] = int((labels != -100).sum())
        if item["tokens"]:
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([encoded["input_ids"]], device=device)).logits[0, :-1].float()
            loss = torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100, reduction="sum")
            item["loss"] = float(loss) / item["tokens"]
        return item

    try:
        return [score(model, row) for row in rows]
    finally:
        del model  # accelerate's hooks (device_map="auto") hold it in reference cycles: collect, then free
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def val_loss_scores(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The benchmark entry: the mean over conversations of their loss per assistant token, its bootstrap 95%
    interval, and every conversation (``mean`` per item, for the paired comparison with the base model)."""
    scored = [it for it in items if it.get("tokens")]
    losses = [it["loss"] for it in scored]
    mean = sum(losses) / len(losses) if losses else 0.0
    return {
        "n": len(scored),
        "mean": mean,
        "mean_ci95": outward(*bootstrap_interval(losses)),
        "counted": {"assistant_tokens": sum(it["tokens"] for it in scored), "truncated_away": len(items) - len(scored)},
        "items": [{"id": it["id"], "mean": it["loss"]} for it in scored],
    }

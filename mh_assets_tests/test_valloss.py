"""Validation loss on the tiny model: swift's encoding of the lane's chat template, checked against the same loss
computed independently (ChatML written out by hand, transformers' forward pass), and the paired benchmark entry."""

import json
from pathlib import Path

import pytest

from mh_assets.lane import load_lanes
from mh_assets.snapshot import build_snapshot
from mh_assets.sources import SAMPLE_DATASET
from mh_assets.valloss import conversation_id, conversation_losses, val_loss_scores

TINY = load_lanes()["tiny"].sft
QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


@pytest.fixture(scope="module")
def conversations(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("snapshot")
    build_snapshot(SAMPLE_DATASET, out)
    rows = [json.loads(x) for x in (out / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    with_system = [r for r in rows if r["messages"][0]["role"] == "system"][:2]
    multi_turn = [r for r in rows if len(r["messages"]) >= 6][:2]
    return with_system + multi_turn


def _by_hand(model_dir: Path, messages: list[dict]) -> tuple[float, int]:
    """ChatML as Qwen2.5 writes it, tokenized piece by piece; loss on each assistant reply and the "<|im_end|>\n"
    after it (what swift's qwen2_5 template trains on)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    if messages[0]["role"] != "system":
        messages = [{"role": "system", "content": QWEN_SYSTEM}, *messages]
    pieces: list[tuple[str, bool]] = []
    for m in messages:
        if m["role"] == "assistant":
            pieces += [("<|im_start|>assistant\n", False), (m["content"] + "<|im_end|>\n", True)]
        else:
            pieces.append((f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n", False))
    ids, labels = [], []
    for text, learn in pieces:
        piece = tok(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if learn else [-100] * len(piece)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
    target = torch.tensor(labels[1:])
    loss = torch.nn.functional.cross_entropy(logits, target, ignore_index=-100, reduction="sum")
    n = int((target != -100).sum())
    return float(loss) / n, n


def test_swifts_template_scores_exactly_the_assistant_turns(tiny_model, conversations):
    got = conversation_losses(str(tiny_model), conversations, TINY.model_type, TINY.template, 4096, "float32")
    for row, item in zip(conversations, got, strict=True):
        expected, tokens = _by_hand(tiny_model, row["messages"])
        assert item["id"] == conversation_id(row["messages"])
        assert item["tokens"] == tokens
        assert item["loss"] == pytest.approx(expected, rel=1e-5)


def test_conversations_cut_away_by_max_length_are_counted_not_scored(tiny_model, conversations):
    got = conversation_losses(str(tiny_model), conversations[:1], TINY.model_type, TINY.template, 8, "float32")
    scores = val_loss_scores(got)
    assert got[0]["tokens"] == 0 and scores["n"] == 0 and scores["counted"]["truncated_away"] == 1
    full = val_loss_scores(
        conversation_losses(str(tiny_model), conversations, TINY.model_type, TINY.template, 4096, "float32")
    )
    assert full["n"] == len(conversations) and full["mean_ci95"][0] <= full["mean"] <= full["mean_ci95"][1]
    assert [it["id"] for it in full["items"]] == [conversation_id(r["messages"]) for r in conversations]

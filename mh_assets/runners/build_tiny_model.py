"""Child process: build the tiny lane's base model deterministically from the shipped text.

A byte-level BPE tokenizer (Qwen2 pre-tokenizer regex, NFC, ByteLevel) with the 22 Qwen2.5 special tokens and
the Qwen2.5 chat template, and a Qwen2 model (``MODEL``: hidden size 64, 2 layers, 4 heads, 2 KV heads, seed 0),
pre-trained (full weights, ``PRETRAIN``) on ``tiny_tokenizer.pretraining_documents()``: psychoeducation paragraphs,
general-domain prose and general assistant exchanges, never the counselling conversations the lane fine-tunes on
(the tokenizer's vocabulary is learnt from those too). So the base model writes Chinese and knows the chat format,
and the lane's LoRA SFT has something to adapt.
Runs under Dagster Pipes (``extras["output_dir"]``) or from the command line: ``python -m ... OUTPUT_DIR``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mh_assets.tiny_tokenizer import (
    CORPUS_FILES,
    VOCAB_SIZE,
    Document,
    pretraining_documents,
    pretraining_files,
    train_tokenizer,
)

SEED = 0
MODEL = {
    "hidden_size": 64,
    "intermediate_size": 172,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
# Greedy decoding of a model this small falls into loops ("你你你…"); Qwen2.5 ships 1.05 for the same reason. Base
# and fine-tuned models share it (the merge keeps the base's generation_config.json), so comparisons stay fair.
REPETITION_PENALTY = 1.2
PRETRAIN = {
    "epochs": 8,
    "seq_len": 128,
    "batch_size": 16,
    "lr": 1e-2,
    "warmup_steps": 20,
    "weight_decay": 0.01,
    "threads": 2,
}

# The Qwen2.5 chat template (system default, tools and tool responses).
CHAT_TEMPLATE = (
    "{%- if tools %}{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}"
    "{%- else %}{{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}{%- endif %}"
    '{{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n'
    'You are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}'
    '{%- for tool in tools %}{{- "\\n" }}{{- tool | tojson }}{%- endfor %}'
    '{{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within '
    '<tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": '
    '<args-json-object>}\\n</tool_call><|im_end|>\\n" }}'
    "{%- else %}{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "<|im_end|>\\n' }}{%- endif %}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) or "
    "(message.role == 'assistant' and not message.tool_calls) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- elif message.role == 'assistant' %}{{- '<|im_start|>' + message.role }}"
    "{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}"
    "{%- for tool_call in message.tool_calls %}{%- if tool_call.function is defined %}"
    "{%- set tool_call = tool_call.function %}{%- endif %}"
    '{{- \'\\n<tool_call>\\n{"name": "\' }}{{- tool_call.name }}{{- \'", "arguments": \' }}'
    "{{- tool_call.arguments | tojson }}{{- '}\\n</tool_call>' }}{%- endfor %}{{- '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != 'tool') %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' }}{{- message.content }}{{- '\\n</tool_response>' }}"
    "{%- if loop.last or (messages[loop.index0 + 1].role != 'tool') %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def build_version() -> str:
    """What decides the built model: the settings above and the text it and its tokenizer learn from. Part of
    base_model_tiny's code version, so editing either marks the base model (and all after it) stale."""
    import hashlib

    settings = {"seed": SEED, "model": MODEL, "pretrain": PRETRAIN, "vocab_size": VOCAB_SIZE,
                "repetition_penalty": REPETITION_PENALTY, "chat_template": CHAT_TEMPLATE}  # fmt: skip
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in [*pretraining_files(), CORPUS_FILES[1]]:  # the tokenizer also learns from the sample conversations
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def build(output_dir: Path) -> dict[str, int]:
    """Write tokenizer and model files into ``output_dir``; return size figures."""
    import torch
    from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tok = train_tokenizer()

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
        chat_template=CHAT_TEMPLATE,
    )
    fast.save_pretrained(output_dir)
    config_path = output_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.update(tokenizer_class="Qwen2Tokenizer", split_special_tokens=False, add_bos_token=False)
    config_path.write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")

    eos_id = tok.token_to_id("<|im_end|>")
    pad_id = tok.token_to_id("<|endoftext|>")
    torch.manual_seed(SEED)
    model_config = Qwen2Config(
        vocab_size=tok.get_vocab_size(),
        **MODEL,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=pad_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        torch_dtype="float32",
    )
    model = Qwen2ForCausalLM(model_config)
    losses = pretrain(model, fast, pretraining_documents())
    model.generation_config = GenerationConfig(  # a model's own decoding defaults, as Qwen2.5 ships its own
        bos_token_id=pad_id,
        eos_token_id=[eos_id, pad_id],
        pad_token_id=pad_id,
        do_sample=False,
        repetition_penalty=REPETITION_PENALTY,
    )
    model.save_pretrained(output_dir, safe_serialization=True)
    return {
        "vocab_size": tok.get_vocab_size(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "pretrain_first_loss": round(losses[0], 4),
        "pretrain_last_loss": round(losses[-1], 4),
    }


def pretrain(model, tokenizer, documents: list[Document]) -> list[float]:  # noqa: ANN001 (torch/transformers types)
    """Deterministic causal-LM training on the documents (prose ends with ``<|endoftext|>``; exchanges are written
    by the chat template, so the model learns where a reply starts and stops), in a new seeded order each epoch,
    packed into blocks; AdamW with warm-up and cosine decay. Returns the per-step losses."""
    import math
    import random

    import torch

    torch.set_num_threads(PRETRAIN["threads"])
    torch.use_deterministic_algorithms(True)
    encoded = [
        tokenizer(doc)["input_ids"] + [tokenizer.pad_token_id]
        if isinstance(doc, str)
        else tokenizer.apply_chat_template(doc, tokenize=True, return_dict=True)["input_ids"]
        for doc in documents
    ]
    n, batch_size = PRETRAIN["seq_len"], PRETRAIN["batch_size"]
    steps_per_epoch = -(-(sum(map(len, encoded)) // n) // batch_size)
    total, warmup = PRETRAIN["epochs"] * steps_per_epoch, PRETRAIN["warmup_steps"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=PRETRAIN["lr"], weight_decay=PRETRAIN["weight_decay"])
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    )
    model.train()
    losses = []
    for epoch in range(PRETRAIN["epochs"]):
        order = random.Random(SEED + epoch).sample(range(len(encoded)), len(encoded))
        ids = [token for i in order for token in encoded[i]]
        blocks = torch.tensor(ids[: len(ids) // n * n]).view(-1, n)
        for batch in blocks.split(batch_size):
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            losses.append(loss.item())
    model.eval()
    return losses


def main() -> None:
    from mh_assets.runners import child_pipes

    with child_pipes() as pipes:
        out = Path(pipes.get_extra("output_dir"))
        figures = build(out)
        pipes.log.info(f"built tiny Qwen2 model in {out}: {figures}")
        pipes.report_asset_materialization(metadata=figures)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(build(Path(sys.argv[1])))
    else:
        main()

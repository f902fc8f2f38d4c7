"""Child process: merge a LoRA adapter into its base model with ``swift export`` and say "你好" to the result.

Extras: ``args`` (the ``swift export`` flags), ``output_dir``, ``smoke_prompt``, ``torch_dtype``.
"""

from __future__ import annotations

from pathlib import Path

from mh_assets.models import strip_load_state


def smoke_reply(model_dir: Path, prompt: str, torch_dtype: str, max_new_tokens: int = 32) -> str:
    """Greedy reply of the model in ``model_dir`` to one user turn, through its own chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, torch_dtype), device_map="auto")
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    inputs = tokenizer(text, return_tensors="pt").to(model.device)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def main() -> None:
    from mh_assets.runners import child_pipes

    with child_pipes() as pipes:
        from swift import export_main

        export_main(list(pipes.get_extra("args")))
        out = Path(pipes.get_extra("output_dir"))
        if removed := strip_load_state(out):
            pipes.log.info(f"removed load-time keys from tokenizer_config.json: {', '.join(removed)}")
        prompt = pipes.get_extra("smoke_prompt")
        reply = smoke_reply(out, prompt, pipes.get_extra("torch_dtype"))
        pipes.log.info(f"smoke reply to {prompt!r}: {reply!r}")
        pipes.report_asset_materialization(metadata={"smoke_prompt": prompt, "smoke_reply": reply})


if __name__ == "__main__":
    main()

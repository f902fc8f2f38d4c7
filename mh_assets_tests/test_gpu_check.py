"""CPU smoke of a GPU check: ``SMOKE=1 bench/gpu_check.sh`` runs the GPU check's code path with a tiny config.

Nothing here measures a GPU. The GPU run itself (7B shape, bf16, flash-attn packing) needs an NVIDIA GPU.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mh_assets_tests.conftest import REPO

spec = importlib.util.spec_from_file_location("bench_gpu_check", REPO / "bench" / "gpu_check.py")
gpu_check = sys.modules["bench_gpu_check"] = importlib.util.module_from_spec(spec)  # bench/ is no package
spec.loader.exec_module(gpu_check)

FIELDS = set(
    """mode date ok gpu torch cuda transformers ms_swift peft flash_attn flash_attn_version attention tokens_counted
    recipe recipe_overrides sft_command model_config params dataset_rows dataset_tokens steps_requested steps_done
    first_loss last_loss train_seconds sft_seconds timed_steps timed_tokens timed_seconds tokens_per_s_per_gpu mfu
    mfu_formula peak_tflops peak_memory_gib peak_memory_source merge_seconds merged_safetensors merged_bytes
    generation_tokens generation_seconds generation_tokens_per_s step_seconds total_seconds""".split()
)


def processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(args)
    return found


@pytest.mark.e2e
def test_cpu_smoke_of_the_gpu_check(tmp_path: Path) -> None:
    """``SMOKE=1 bench/gpu_check.sh``: build, LoRA SFT with the runbook_7b recipe, merge, generate; JSON complete."""
    results_before = sorted((REPO / "bench" / "results").iterdir())
    out, work = tmp_path / "out" / "gpu-smoke.json", tmp_path / "work"
    env = {**os.environ, "SMOKE": "1", "PYTHON": sys.executable}
    proc = subprocess.run(
        [str(REPO / "bench" / "gpu_check.sh"), "--out", str(out), "--work-dir", str(work)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text(encoding="utf-8"))

    assert FIELDS <= result.keys(), FIELDS - result.keys()
    assert result["ok"] is True and result["mode"].startswith("smoke")
    assert result["steps_done"] == result["steps_requested"] == 2
    assert result["timed_steps"] == "2-2" and result["timed_tokens"] > 0 and result["timed_seconds"] > 0
    assert result["tokens_per_s_per_gpu"] > 0
    assert math.isfinite(result["first_loss"]) and math.isfinite(result["last_loss"])
    # no GPU: no flash-attn, no packing, no MFU (no peak to divide by), no GPU memory figure
    assert result["flash_attn"] is False and result["attention"] == "sdpa without packing"
    assert result["gpu"] is None and result["cuda"] is None
    assert result["mfu"] is None and result["peak_tflops"] is None and "6 * N" in result["mfu_formula"]
    assert result["peak_memory_gib"] is None and result["peak_memory_source"] == "none (CPU)"
    # the project's recipe, rendered by SftRun.to_args
    command = result["sft_command"]
    assert "--lora_rank 8 --lora_alpha 32 --target_modules all-linear" in command
    assert "--per_device_train_batch_size 8 --gradient_accumulation_steps 4 --max_length 3072" in command
    assert "--max_steps 2" in command and "--gradient_checkpointing true" in command
    assert result["model_config"] == gpu_check.TINY and 0 < result["params"] < 1_000_000
    assert result["dataset_tokens"] >= 2 * 8 * 4 * 3072  # enough to fill packing
    # merged model and generation
    assert result["merge_seconds"] > 0 and result["merged_safetensors"]
    assert all((work / "merged" / name).stat().st_size > 0 for name in result["merged_safetensors"])
    assert result["generation_tokens"] == 32 and result["generation_tokens_per_s"] > 0
    assert set(result["step_seconds"]) == {"tokenizer", "init", "sft", "merge", "generate"}
    # nothing left running, nothing written to bench/results
    assert processes_mentioning(str(work)) == []
    assert sorted((REPO / "bench" / "results").iterdir()) == results_before


def test_training_figures_leave_out_the_first_step(tmp_path: Path) -> None:
    lines = [
        {"loss": 3.0, "num_input_tokens_seen": 100, "global_step/max_steps": "1/3", "train_speed(s/it)": 5.0},
        {"loss": 2.5, "num_input_tokens_seen": 300, "global_step/max_steps": "2/3", "train_speed(s/it)": 3.0},
        {"loss": 2.0, "num_input_tokens_seen": 500, "global_step/max_steps": "3/3", "train_speed(s/it)": 7 / 3},
        {"train_runtime": 7.5, "num_input_tokens_seen": 500, "global_step/max_steps": "3/3", "train_speed(s/it)": 2.5},
        {"last_model_checkpoint": "/x/checkpoint-3", "global_step": 3},
    ]
    for line in lines[:3]:
        line["memory(GiB)"] = 40.5
    path = tmp_path / "logging.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    figures = gpu_check.training_figures(path)
    assert figures["steps_done"] == 3 and figures["first_loss"] == 3.0 and figures["last_loss"] == 2.0
    assert figures["timed_steps"] == "2-3" and figures["timed_tokens"] == 400
    assert figures["timed_seconds"] == pytest.approx(2.0) and figures["tokens_per_s_per_gpu"] == pytest.approx(200)
    assert figures["train_seconds"] == pytest.approx(7.0) and figures["swift_memory_gib"] == 40.5


def test_mfu_formula() -> None:
    # 7.6B parameters at 8,000 tokens/s on an H200: 6 * 7.6e9 * 8e3 / 989e12
    assert gpu_check.mfu(7_600_000_000, 8000.0, gpu_check.peak_tflops_for("NVIDIA H200")) == 0.3689
    assert gpu_check.mfu(7_600_000_000, 8000.0, gpu_check.peak_tflops_for(None)) is None
    assert gpu_check.peak_tflops_for("NVIDIA A10G") is None


def test_synthetic_rows_are_counselling_conversations() -> None:
    rng = random.Random(1)
    for _ in range(20):
        messages = gpu_check.conversation(rng)["messages"]
        assert messages[0]["role"] == "system" and 5 <= len(messages) <= 13
        assert [m["role"] for m in messages[1:]] == ["user", "assistant"] * ((len(messages) - 1) // 2)
        assert all(m["content"] and "{" not in m["content"] for m in messages)


def test_memory_sampler_keeps_the_peak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = tmp_path / "n"
    fake = tmp_path / "nvidia-smi"
    # 1000, 3000, 2000, 2000, ... MiB on successive calls
    fake.write_text(
        f"#!/bin/sh\nn=$(cat {counter} 2>/dev/null || echo 0); echo $((n + 1)) > {counter}\n"
        "case $n in 0) echo 1000;; 1) echo 3000;; *) echo 2000;; esac\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    sampler = gpu_check.MemorySampler("0")
    sampler.start()
    deadline = time.monotonic() + 30
    while (not counter.exists() or int(counter.read_text() or 0) < 3) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sampler.stop() == round(3000 / 1024, 2)

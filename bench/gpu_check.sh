#!/usr/bin/env bash
# GPU check: runbook_7b LoRA SFT on a random Qwen2.5-7B-shaped model, merge, generate (at most 10 minutes, one GPU).
#   bench/gpu_check.sh                  -> bench/results/gpu-$(date +%F).json
#   SMOKE=1 bench/gpu_check.sh          -> the same path on CPU with a tiny config (--dry-run), JSON in a tmp dir
# Other flags go to bench/gpu_check.py (--steps, --out, --work-dir, --budget-s, --cuda-device, --peak-tflops).
# PYTHON picks the interpreter (default: the project's .venv, with ms-swift and, on a GPU, CUDA torch and flash-attn).
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
if [ "${SMOKE:-0}" = 1 ]; then
  set -- --dry-run "$@"
fi
exec "$python" bench/gpu_check.py "$@"

"""Judge whether a machine can run a lane's recipe, from the facts ``runners/probe_env.py`` records.

Plain module: no dagster, no torch.
"""

from __future__ import annotations

from typing import Any

from mh_assets.lane import Lane

Verdict = tuple[bool, str]


def _gpu_summary(facts: dict[str, Any]) -> str:
    return (
        f"torch {facts.get('torch')} (CUDA build: {facts.get('torch_cuda') or 'none'}), "
        f"CUDA_VISIBLE_DEVICES={facts.get('cuda_visible_devices')!r}, GPUs visible: {len(facts.get('gpus', []))}"
    )


def flash_attn_verdict(facts: dict[str, Any], lane: Lane) -> Verdict:
    recipe = lane.sft
    if not recipe.needs_flash_attn:
        return True, f"not required: the {lane.name} recipe neither packs nor asks for flash_attn"
    why = f"the {lane.name} recipe uses packing={recipe.packing} attn_impl={recipe.attn_impl}, which need flash-attn"
    gpus = facts.get("gpus", [])
    if not gpus:
        return False, f"{why}, and flash-attn needs a CUDA GPU: none is visible here ({_gpu_summary(facts)})"
    old = [g["name"] for g in gpus if tuple(g["capability"]) < (8, 0)]
    if old:
        return False, f"{why}; flash-attn 2 needs compute capability 8.0+ (Ampere or newer), these are older: {old}"
    fa = facts.get("flash_attn", {})
    if not fa.get("kernel_ok"):
        return False, (
            f"{why}, but its CUDA kernel does not import ({fa.get('error')}). "
            "Install it for this torch: pip install flash-attn --no-build-isolation"
        )
    return True, f"flash-attn {fa.get('version')} kernel imports; GPUs {[g['name'] for g in gpus]}"


def precision_verdict(facts: dict[str, Any], lane: Lane) -> Verdict:
    dtype = lane.sft.torch_dtype
    if not lane.sft.needs_bf16:
        return True, f"not required: the {lane.name} recipe trains in {dtype}"
    gpus = facts.get("gpus", [])
    if not gpus:
        return False, (
            f"the {lane.name} recipe trains in bfloat16, which needs a GPU with bf16 support; none is visible "
            f"({_gpu_summary(facts)})"
        )
    no_bf16 = [g["name"] for g in gpus if not g.get("bf16")]
    if no_bf16:
        return False, (f"these GPUs have no bf16: {no_bf16}. Train in fp16 instead: --torch_dtype float16 --fp16 true")
    return True, f"bf16 supported on {[g['name'] for g in gpus]}"


# A card sold as "80 GB" reports 79.1-79.6 GiB of total memory; a lane asking for 80 GiB means that card.
MEMORY_SLACK = 0.95


def gpu_fit_verdict(facts: dict[str, Any], lane: Lane) -> Verdict:
    """The lane's GPU count, each with the memory the lane needs, is visible to its training process."""
    need = lane.gpu
    if not need.required:
        return True, f"not required: the {lane.name} lane trains on CPU"
    gpus = facts.get("gpus", [])
    wanted = f"the {lane.name} lane needs {need.count} GPU(s) with {need.min_memory_gib} GiB each"
    big = [g for g in gpus if g.get("memory_gib", 0) >= need.min_memory_gib * MEMORY_SLACK]
    if len(big) >= need.count:
        return True, f"{wanted}: {len(big)} visible ({', '.join(g['name'] for g in big)})"
    small = [f"{g['name']} ({g.get('memory_gib')} GiB)" for g in gpus if g not in big]
    missing = f"{len(gpus)} visible" + (f", too small: {', '.join(small)}" if small else "")
    return False, (
        f"{wanted}: {missing} ({_gpu_summary(facts)}). Give it more GPUs (MH_GPU_DEVICES) or a lane file "
        "with a smaller gpu.count / min_memory_gib and a recipe that fits"
    )

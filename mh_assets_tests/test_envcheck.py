"""Training-environment verdicts: what is missing is named, and the tiny lane needs nothing."""

from mh_assets.envcheck import flash_attn_verdict, precision_verdict
from mh_assets.lane import load_lanes

CPU = {
    "torch": "2.13.0+cpu",
    "torch_cuda": None,
    "cuda_visible_devices": "0",
    "gpus": [],
    "flash_attn": {"kernel_ok": False, "error": "ModuleNotFoundError: No module named 'flash_attn'"},
}
H100 = {"name": "NVIDIA H100 80GB HBM3", "capability": [9, 0], "memory_gib": 79.1, "bf16": True}
T4 = {"name": "Tesla T4", "capability": [7, 5], "memory_gib": 15.0, "bf16": False}


def test_tiny_needs_neither():
    for verdict in (flash_attn_verdict(CPU, load_lanes()["tiny"]), precision_verdict(CPU, load_lanes()["tiny"])):
        assert verdict[0] and verdict[1].startswith("not required")


def test_7b_on_cpu_names_the_missing_gpu():
    ok, msg = flash_attn_verdict(CPU, load_lanes()["7b"])
    assert not ok and "CUDA GPU" in msg and "none is visible" in msg
    ok, msg = precision_verdict(CPU, load_lanes()["7b"])
    assert not ok and "bfloat16" in msg


def test_gpu_without_flash_attn_says_how_to_install():
    ok, msg = flash_attn_verdict({**CPU, "gpus": [H100]}, load_lanes()["32b"])
    assert not ok and "pip install flash-attn" in msg and "No module named" in msg


def test_old_gpu_is_refused_and_fp16_suggested():
    facts = {**CPU, "gpus": [T4], "flash_attn": {"kernel_ok": True, "version": "2.8.3"}}
    ok, msg = flash_attn_verdict(facts, load_lanes()["7b"])
    assert not ok and "8.0" in msg
    ok, msg = precision_verdict(facts, load_lanes()["7b"])
    assert not ok and "fp16" in msg


def test_h100_with_kernel_passes():
    facts = {**CPU, "gpus": [H100], "flash_attn": {"kernel_ok": True, "version": "2.8.3"}}
    assert flash_attn_verdict(facts, load_lanes()["7b"])[0] and precision_verdict(facts, load_lanes()["7b"])[0]


def test_gpu_fit_counts_cards_with_enough_memory():
    from mh_assets.envcheck import gpu_fit_verdict

    lane = load_lanes()["7b"]  # 1 GPU with 80 GiB
    ok, msg = gpu_fit_verdict({**CPU, "gpus": [H100]}, lane)  # an "80 GB" card reports 79.1 GiB
    assert ok and "1 visible" in msg
    ok, msg = gpu_fit_verdict({**CPU, "gpus": [T4, T4]}, lane)
    assert not ok and "2 visible, too small: Tesla T4" in msg and "MH_GPU_DEVICES" in msg
    ok, msg = gpu_fit_verdict(CPU, load_lanes()["tiny"])
    assert ok and msg.startswith("not required")

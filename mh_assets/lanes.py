"""The size registry: one ``Lane`` per model size, from which the asset factory builds every lane.

Plain module: no dagster, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mh_assets.recipes import SftRecipe

TINY_MODEL_ID = "builtin:tiny-qwen2"


@dataclass(frozen=True)
class GpuNeeds:
    count: int = 0
    min_memory_gib: int = 0
    default_devices: str = ""

    @property
    def required(self) -> bool:
        return self.count > 0


@dataclass(frozen=True)
class Lane:
    size: str
    base_model: str
    revision: str
    recipe: SftRecipe
    gpu: GpuNeeds
    swanlab_project: str = "mh-sft"
    swanlab_exp_name: str = ""
    swanlab_mode: str = "cloud"
    served_model_name: str = ""
    # evaluation: how the model is reached by default (local | service | endpoint), the swift deploy backend for
    # service mode, per-benchmark sample limits, and the reply length; gates live in mh_assets/gates.yaml
    eval_mode: str = "service"
    deploy_backend: str = "transformers"
    eval_limits: dict[str, int] = field(default_factory=dict)
    eval_max_tokens: int = 512
    infer_torch_dtype: str = "bfloat16"
    hub_repo_id: str = ""

    @property
    def is_builtin(self) -> bool:
        return self.base_model == TINY_MODEL_ID

    def key(self, stage: str) -> str:
        """The asset key of one stage of this lane, e.g. ``lora_adapter_7b``."""
        return f"{stage}_{self.size}"

    @property
    def group(self) -> str:
        return f"model_{self.size}"


TINY_RECIPE = SftRecipe(
    num_train_epochs=4,
    learning_rate=5e-3,
    per_device_train_batch_size=4,
    gradient_accumulation_steps=1,
    max_length=512,
    packing=False,
    attn_impl=None,
    torch_dtype="float32",
    gradient_checkpointing=False,
    lora_rank=8,
    lora_alpha=32,
    save_steps=100,
    save_total_limit=2,
    logging_steps=5,
    warmup_ratio=0.0,
    dataloader_num_workers=0,
)

RUNBOOK_7B = SftRecipe(
    num_train_epochs=1,
    learning_rate=2e-4,
    per_device_train_batch_size=8,
    gradient_accumulation_steps=4,
    max_length=3072,
    packing=True,
    attn_impl="flash_attn",
    torch_dtype="bfloat16",
    gradient_checkpointing=True,
    save_steps=200,
    save_total_limit=3,
    logging_steps=20,
)

RUNBOOK_32B = RUNBOOK_7B.with_overrides(per_device_train_batch_size=2, gradient_accumulation_steps=8, max_length=4096)

LANES: dict[str, Lane] = {
    lane.size: lane
    for lane in (
        Lane(
            size="tiny",
            base_model=TINY_MODEL_ID,
            revision="v1",
            recipe=TINY_RECIPE,
            gpu=GpuNeeds(),
            swanlab_exp_name="mh-sft-tiny-lora",
            swanlab_mode="local",
            served_model_name="mh-sft-tiny",
            eval_mode="local",
            eval_limits={"pceb_mcq": 30, "psyqa": 10, "safety": 10},
            eval_max_tokens=48,
            infer_torch_dtype="float32",
            hub_repo_id="local/mh-sft-tiny",
        ),
        Lane(
            size="7b",
            base_model="Qwen/Qwen2.5-7B-Instruct",
            revision="master",
            recipe=RUNBOOK_7B,
            gpu=GpuNeeds(count=1, min_memory_gib=80, default_devices="0"),
            swanlab_exp_name="mh-sft-qwen2p5-7b-lora",
            served_model_name="mh-sft-7b",
            hub_repo_id="yourname/mh-sft-qwen2p5-7b",
        ),
        Lane(
            size="32b",
            base_model="Qwen/Qwen2.5-32B-Instruct",
            revision="master",
            recipe=RUNBOOK_32B,
            gpu=GpuNeeds(count=1, min_memory_gib=80, default_devices="0"),
            swanlab_exp_name="mh-sft-qwen2p5-32b-lora",
            served_model_name="mh-sft-32b",
            hub_repo_id="yourname/mh-sft-qwen2p5-32b",
        ),
    )
}

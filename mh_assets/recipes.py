"""Training and export recipes, named exactly like ms-swift 4's CLI flags.

A recipe reads like the runbook command: ``SftRecipe(...).to_cli()`` renders the ``swift sft`` line
that reproduces a run, and ``to_args()`` gives the same flags as a list for ``sft_main``.
Plain module: no dagster, no torch.
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass, field
from typing import Any, Literal


def _flag_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def flags(obj: Any) -> list[tuple[str, list[str]]]:
    """``(name, values)`` for every field that is set (``None``, or a field's ``unset`` value, means: leave swift's
    default)."""
    pairs = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is not None and value != f.metadata.get("unset"):
            values = value if isinstance(value, (list, tuple)) else [value]
            pairs.append((f.name, [_flag_value(v) for v in values]))
    return pairs


def _to_args(obj: Any) -> list[str]:
    return [arg for name, values in flags(obj) for arg in (f"--{name}", *values)]


@dataclass(frozen=True)
class SftRecipe:
    """The hyperparameters of one lane's LoRA SFT, as ms-swift 4 names them."""

    model_type: str = "qwen2"
    template: str = "qwen2_5"
    tuner_type: str = "lora"
    num_train_epochs: float = 1
    learning_rate: float = 2e-4
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 4
    max_length: int = 3072
    packing: bool = True
    attn_impl: str | None = "flash_attn"
    torch_dtype: str = "bfloat16"
    gradient_checkpointing: bool = True
    lora_rank: int = 8
    lora_alpha: int = 32
    target_modules: tuple[str, ...] = ("all-linear",)
    save_steps: int = 200
    save_total_limit: int = 3
    logging_steps: int = 20
    # validation loss on val.jsonl every this many steps (None: swift's default, at each save)
    eval_steps: int | None = None
    warmup_ratio: float = 0.05
    dataloader_num_workers: int = 4
    seed: int = 42
    # counted so that progress can report tokens/s (swift's CLI takes only a boolean: every token, padding included)
    include_num_input_tokens_seen: bool = True
    # DeepSpeed ZeRO stage: the runbook's fix for running out of memory ("none": plain DDP)
    deepspeed: Literal["none", "zero2", "zero3"] = field(default="none", metadata={"unset": "none"})

    @property
    def needs_flash_attn(self) -> bool:
        """Packing (and padding-free batching) are refused by swift without flash attention."""
        return self.packing or (self.attn_impl or "").startswith("flash_attn")

    @property
    def needs_bf16(self) -> bool:
        return self.torch_dtype == "bfloat16"

    def with_overrides(self, **overrides: Any) -> SftRecipe:
        """A copy with the given fields replaced; ``None`` values are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def global_batch_size(self) -> int:
        """Sequences per optimizer step as the recipe is written: for one process."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps

    def for_world_size(self, world_size: int) -> SftRecipe:
        """The same recipe on ``world_size`` processes, keeping the global batch: gradient accumulation shrinks with
        more GPUs, and where the per-device batch does not divide what is left, each GPU takes the largest share
        that does."""
        batch = self.global_batch_size
        if world_size < 1:
            raise ValueError(f"world size must be at least 1, not {world_size}")
        for per_device in range(self.per_device_train_batch_size, 0, -1):
            if batch % (per_device * world_size) == 0:
                return dataclasses.replace(
                    self,
                    per_device_train_batch_size=per_device,
                    gradient_accumulation_steps=batch // (per_device * world_size),
                )
        raise ValueError(
            f"a global batch of {batch} ({self.per_device_train_batch_size} per device x "
            f"{self.gradient_accumulation_steps} accumulation) cannot be split evenly over {world_size} GPUs: "
            "choose per_device_train_batch_size and gradient_accumulation_steps whose product is a multiple of the "
            "GPU count"
        )


@dataclass(frozen=True)
class Launch:
    """How ``swift sft`` starts training: one process, or torchrun with ``nproc_per_node`` processes on each of
    ``nnodes`` machines (ms-swift reads NPROC_PER_NODE, NNODES, NODE_RANK, MASTER_ADDR and MASTER_PORT)."""

    nproc_per_node: int = 1
    nnodes: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int = 29500

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    def env(self, node_rank: int | str = 0) -> dict[str, str]:
        """The variables that make ``swift sft`` use torchrun; none for a single process."""
        if self.world_size == 1:
            return {}
        env = {"NPROC_PER_NODE": str(self.nproc_per_node)}
        if self.nnodes > 1:
            env |= {
                "NNODES": str(self.nnodes),
                "NODE_RANK": str(node_rank),
                "MASTER_ADDR": self.master_addr,
                "MASTER_PORT": str(self.master_port),
            }
        return env


@dataclass(frozen=True)
class SftRun:
    """One concrete training run: a recipe plus the paths and reporting settings of this run."""

    model: str
    dataset: str
    output_dir: str
    recipe: SftRecipe
    report_to: str = "none"
    swanlab_project: str | None = None
    swanlab_exp_name: str | None = None
    swanlab_mode: str | None = None
    resume_from_checkpoint: str | None = None
    external_plugins: tuple[str, ...] = ()
    val_dataset: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_args(self) -> list[str]:
        """Arguments for ``sft_main``/``swift sft``; secrets are never part of them."""
        head = [
            "--model",
            self.model,
            "--dataset",
            self.dataset,
            *(["--val_dataset", self.val_dataset] if self.val_dataset else []),
            "--output_dir",
            self.output_dir,
            "--add_version",
            "false",
            "--check_model",
            "false",
            "--report_to",
            self.report_to,
        ]
        if self.report_to == "swanlab":
            head += ["--swanlab_project", str(self.swanlab_project), "--swanlab_exp_name", str(self.swanlab_exp_name)]
            # swift accepts only cloud|local; offline/disabled runs are started by the runner itself.
            if self.swanlab_mode in ("cloud", "local"):
                head += ["--swanlab_mode", self.swanlab_mode]
        if self.resume_from_checkpoint:
            head += ["--resume_from_checkpoint", self.resume_from_checkpoint]
        if self.external_plugins:
            head += ["--external_plugins", *self.external_plugins]
        tail: list[str] = []
        for name, value in self.extra.items():
            tail += [f"--{name}", _flag_value(value)]
        return head + _to_args(self.recipe) + tail

    def to_cli(self, gpu_devices: str | None = None, launch: Launch = Launch(), node_rank: int | str = 0) -> str:
        """The equivalent shell command (on node ``node_rank``), for the run's metadata and the report."""
        env = launch.env(node_rank) | ({"CUDA_VISIBLE_DEVICES": gpu_devices} if gpu_devices else {})
        prefix = "".join(f"{k}={shlex.quote(v)} " for k, v in env.items())
        return prefix + "swift sft " + " ".join(shlex.quote(a) for a in self.to_args())


@dataclass(frozen=True)
class MergeRun:
    """``swift export`` merging a LoRA adapter into its base model (``model``, else the one args.json names)."""

    adapters: str
    output_dir: str
    merge_lora: bool = True
    safe_serialization: bool = True
    max_shard_size: str = "2GB"
    device_map: str | None = None
    model: str | None = None  # the base model's folder here (None: the one the adapter's args.json names)

    def to_args(self) -> list[str]:
        return _to_args(self)

    def to_cli(self) -> str:
        return "swift export " + " ".join(shlex.quote(a) for a in self.to_args())


def shell_lines(command: str) -> str:
    """A one-line shell command as the same command over several lines, one option (and its values) per line
    joined by ``\\``: what the UI and the report show, so a long command wraps instead of widening its table."""
    tokens = shlex.split(command)
    head = 0
    while head < len(tokens) and not tokens[head].startswith("--"):
        head += 1
    lines = [" ".join(shlex.quote(t) for t in tokens[:head])]
    for token in tokens[head:]:
        if token.startswith("--"):
            lines.append("  " + shlex.quote(token))
        else:
            lines[-1] += " " + shlex.quote(token)
    return " \\\n".join(lines)


# The named recipes a lane file starts from (``recipe: {base: runbook_7b, ...overrides}``).
RECIPES: dict[str, SftRecipe] = {
    # the runbook's 7B command (packing with flash-attn, bf16, effective batch 32): SftRecipe's own defaults
    "runbook_7b": SftRecipe(),
    # the tiny model on CPU: float32, no packing, a high learning rate so a few steps visibly move the loss
    "tiny_cpu": SftRecipe(
        num_train_epochs=5,
        learning_rate=1e-2,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        max_length=512,
        packing=False,
        attn_impl=None,
        torch_dtype="float32",
        gradient_checkpointing=False,
        lora_rank=32,
        lora_alpha=64,
        save_steps=100,
        save_total_limit=2,
        logging_steps=5,
        eval_steps=40,
        warmup_ratio=0.0,
        dataloader_num_workers=0,
    ),
}

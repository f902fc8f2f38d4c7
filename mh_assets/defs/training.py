"""Training: what the machine offers a lane's recipe (with its blocking checks), the LoRA adapter trained by
ms-swift, and the adapter merged into its base model by ``swift export``."""

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg

from mh_assets.defs.common import (
    child_metadata,
    doc,
    gpu_hint,
    gpu_pool,
    lane_asset,
    read_json,
    runner,
    settings_digest,
)
from mh_assets.defs.data import SNAPSHOT
from mh_assets.defs.resources import ArtifactStore, GpuResource, ProcessGroupPipesClient, SwanLabResource
from mh_assets.envcheck import Verdict, flash_attn_verdict, gpu_fit_verdict, precision_verdict
from mh_assets.lane import Lane
from mh_assets.models import model_dir
from mh_assets.recipes import MergeRun, SftRun
from mh_assets.store import finalize, hash_tree, tree_size

# what a checkpoint holds besides the adapter: training state that differs run to run
TRAINING_STATE = ("optimizer", "rng_state", "scheduler", "trainer_state", "training_args", "args.json")


class LoraAdapterConfig(dg.Config):
    num_train_epochs: float | None = None
    learning_rate: float | None = None
    max_length: int | None = None
    resume_from_checkpoint: str | None = None


def _facts(lane: Lane, artifacts: ArtifactStore) -> dict[str, Any]:
    return read_json(artifacts.upstream(lane.key("training_env")) / "facts.json")


def training_env_asset(lane: Lane) -> dg.AssetsDefinition:
    """What this machine offers the lane's training (torch, CUDA, GPUs, bf16, flash-attn), seen by a child process
    with the lane's CUDA_VISIBLE_DEVICES."""
    key = lane.key("training_env")

    @lane_asset(
        lane,
        key,
        doc(training_env_asset),
        deps=[lane.key("base_model")],
        kinds={"python"},
    )
    def _asset(
        context: dg.AssetExecutionContext, pipes: ProcessGroupPipesClient, gpu: GpuResource, artifacts: ArtifactStore
    ) -> dg.MaterializeResult:
        with artifacts.staging(key) as tmp:
            inv = pipes.run(
                context=context,
                command=runner("probe_env"),
                extras={"output_file": str(tmp / "facts.json")},
                env=artifacts.child_env(gpu.devices_for(lane)),
            )
            version = settings_digest(read_json(tmp / "facts.json"))
            finalize(tmp, version)
        return dg.MaterializeResult(data_version=dg.DataVersion(version), metadata=child_metadata(inv))

    return _asset


ENV_CHECKS: dict[str, tuple[Callable[[dict[str, Any], Lane], Verdict], str]] = {
    "flash_attn_available": (
        flash_attn_verdict,
        "When the recipe packs or asks for flash_attn, its CUDA kernel imports on a GPU that supports it.",
    ),
    "precision_supported": (precision_verdict, "bf16 recipes need a GPU with bf16 (else: train in fp16)."),
    "gpu_fit": (gpu_fit_verdict, "The lane's GPU count, each with the memory the lane needs, is visible to training."),
}


def training_env_checks(lane: Lane) -> list[dg.AssetChecksDefinition]:
    """The blocking checks that stop a lane before training on a machine that cannot run its recipe."""

    def build(check_name: str) -> dg.AssetChecksDefinition:
        verdict_fn, description = ENV_CHECKS[check_name]

        @dg.asset_check(asset=lane.key("training_env"), name=check_name, blocking=True, description=description)
        def _check(artifacts: ArtifactStore) -> dg.AssetCheckResult:
            passed, message = verdict_fn(_facts(lane, artifacts), lane)
            return dg.AssetCheckResult(
                passed=passed, severity=dg.AssetCheckSeverity.ERROR, description=message, metadata={"verdict": message}
            )

        return _check

    return [build(check_name) for check_name in ENV_CHECKS]


def lora_adapter_asset(lane: Lane) -> dg.AssetsDefinition:
    """LoRA SFT of the base model on the dataset snapshot with ms-swift, reported to SwanLab."""
    key = lane.key("lora_adapter")

    @lane_asset(
        lane,
        key,
        doc(lora_adapter_asset),
        deps=[SNAPSHOT, lane.key("base_model"), lane.key("training_env")],
        pool=gpu_pool(lane),
        code_version=settings_digest(dataclasses.asdict(lane.sft)),
        kinds={"pytorch"},
    )
    def _asset(
        context: dg.AssetExecutionContext,
        config: LoraAdapterConfig,
        pipes: ProcessGroupPipesClient,
        gpu: GpuResource,
        swanlab: SwanLabResource,
        artifacts: ArtifactStore,
    ) -> dg.MaterializeResult:
        snapshot = artifacts.upstream(SNAPSHOT)
        base = model_dir(artifacts.upstream(lane.key("base_model"), gpu_hint(lane)))
        facts = _facts(lane, artifacts)
        problems = [msg for ok, msg in (verdict(facts, lane) for verdict, _ in ENV_CHECKS.values()) if not ok]
        if problems:
            raise dg.Failure(
                description=f"{lane.key('training_env')} says this machine cannot train the {lane.name} recipe: "
                + "; ".join(problems)
            )
        recipe = lane.sft.with_overrides(
            num_train_epochs=config.num_train_epochs, learning_rate=config.learning_rate, max_length=config.max_length
        )
        devices = gpu.devices_for(lane)
        swanlab_cfg = swanlab.run_config(lane, dataclasses.asdict(recipe), artifacts.store.root)
        with artifacts.staging(key) as tmp:
            run = SftRun(
                model=str(base),
                dataset=str(snapshot / "train.jsonl"),
                output_dir=str(tmp),
                recipe=recipe,
                report_to="swanlab" if swanlab_cfg else "none",
                swanlab_project=lane.swanlab.project,
                swanlab_exp_name=lane.swanlab.exp_name,
                swanlab_mode=swanlab_cfg["mode"] if swanlab_cfg else None,
                resume_from_checkpoint=config.resume_from_checkpoint,
            )
            inv = pipes.run(
                context=context,
                command=runner("train"),
                extras={"args": run.to_args(), "output_dir": str(tmp), "swanlab": swanlab_cfg},
                env={**artifacts.child_env(devices), **swanlab.env()},
            )
            metadata = child_metadata(inv)
            checkpoint = Path(str(metadata.pop("last_model_checkpoint").value)).name
            version = hash_tree(tmp / checkpoint, exclude=TRAINING_STATE)
            folder = f"{context.run.run_id[:8]}-{version[:8]}"
            # The command that reproduces this run writes where this run's result now lives.
            command = dataclasses.replace(run, output_dir=str(tmp.parent / folder)).to_cli(devices)
            summary = {k: v.value for k, v in metadata.items()} | {"checkpoint": checkpoint, "command": command}
            (tmp / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
            final = finalize(tmp, folder)
        return dg.MaterializeResult(
            data_version=dg.DataVersion(version),
            metadata={
                **metadata,
                "checkpoint": dg.MetadataValue.path(str(final / checkpoint)),
                "swift_command": dg.MetadataValue.md(f"```\n{command}\n```"),
                "dataset_sha256": read_json(snapshot / "manifest.json")["sha256"],
            },
        )

    return _asset


def merged_model_asset(lane: Lane) -> dg.AssetsDefinition:
    """The adapter merged into its base model by ``swift export`` (safetensors, 2GB shards)."""
    key = lane.key("merged_model")

    @lane_asset(
        lane,
        key,
        doc(merged_model_asset),
        deps=[lane.key("lora_adapter")],
        pool=gpu_pool(lane),
        kinds={"pytorch", "safetensors"},
    )
    def _asset(
        context: dg.AssetExecutionContext, pipes: ProcessGroupPipesClient, gpu: GpuResource, artifacts: ArtifactStore
    ) -> dg.MaterializeResult:
        adapter = artifacts.upstream(lane.key("lora_adapter"), gpu_hint(lane))
        checkpoint = adapter / "last-checkpoint"
        if not checkpoint.exists():
            raise dg.Failure(description=f"{adapter} holds no last-checkpoint: the training run did not finish")
        with artifacts.staging(key) as tmp:
            tmp.rmdir()  # swift export silently skips saving into an existing folder
            run = MergeRun(
                adapters=str(checkpoint.resolve()), output_dir=str(tmp), device_map=None if lane.gpu.required else "cpu"
            )
            inv = pipes.run(
                context=context,
                command=runner("merge"),
                extras={
                    "args": run.to_args(),
                    "output_dir": str(tmp),
                    "smoke_prompt": "你好",
                    "torch_dtype": lane.evaluation.torch_dtype,
                },
                env=artifacts.child_env(gpu.devices_for(lane)),
            )
            version = hash_tree(tmp, exclude=("args.json",))
            final = finalize(tmp, version[:16])
        files, size = tree_size(final)
        return dg.MaterializeResult(
            data_version=dg.DataVersion(version),
            metadata={
                **child_metadata(inv),
                "path": dg.MetadataValue.path(str(final)),
                "files": files,
                "bytes": size,
                "swift_command": dg.MetadataValue.md(f"```\n{run.to_cli()}\n```"),
            },
        )

    return _asset

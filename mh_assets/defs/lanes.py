"""One factory builds every lane's assets and checks from the size registry (``mh_assets.lanes.LANES``).

Heavy steps run in child processes through Pipes (``mh_assets.runners.*``); artifacts travel by path through the
artifact store (``mh_assets.store``), so selecting a single asset works as long as its upstream files exist.
"""

import dataclasses
import json
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from mh_assets.defs.common import child_metadata, fingerprint, read_json, runner, upstream
from mh_assets.defs.data import SNAPSHOT
from mh_assets.defs.evaluation import build_evaluation
from mh_assets.defs.publishing import build_publishing
from mh_assets.defs.resources import GpuResource, HubResource, ProcessGroupPipesClient, SwanLabResource
from mh_assets.envcheck import flash_attn_verdict, precision_verdict
from mh_assets.lanes import Lane
from mh_assets.models import check_model_folder, hub_endpoint, model_dir, reachable, write_pointer
from mh_assets.procs import child_env
from mh_assets.recipes import MergeRun, SftRun
from mh_assets.store import hash_tree, publish, staging, tree_size

STAGES = (
    "base_model",
    "base_scores",
    "training_env",
    "lora_adapter",
    "merged_model",
    "benchmark_scores",
    "safety_review",
    "hub_upload",
    "experiment_report",
)


class BaseModelConfig(dg.Config):
    local_dir: str = Field(default="", description="Use this model folder instead of downloading.")
    hub: str = Field(default="modelscope", description="modelscope or huggingface")


class LoraAdapterConfig(dg.Config):
    num_train_epochs: float | None = None
    learning_rate: float | None = None
    max_length: int | None = None
    resume_from_checkpoint: str | None = None


def build_lane(lane: Lane) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    """Every asset and check of one lane, keyed by size (``lora_adapter_7b``), grouped ``model_<size>``."""
    key = lane.key
    tags = {"model_size": lane.size}
    pool = "gpu" if lane.gpu.required else None
    gpu_hint = f"it needs {lane.gpu.count} GPU(s) with {lane.gpu.min_memory_gib} GiB" if lane.gpu.required else ""
    common: dict[str, Any] = {"group_name": lane.group, "tags": tags}

    @dg.asset(name=key("base_model"), code_version=f"{lane.base_model}@{lane.revision}", kinds={"pytorch"}, **common)
    def base_model(
        context: dg.AssetExecutionContext, config: BaseModelConfig, pipes: ProcessGroupPipesClient, hub: HubResource
    ) -> dg.MaterializeResult:
        """The lane's base model: built locally for tiny, a pinned hub revision (or a local folder) otherwise."""
        with staging(key("base_model")) as tmp:
            if lane.is_builtin:
                inv = pipes.run(
                    context=context,
                    command=runner("build_tiny_model"),
                    extras={"output_dir": str(tmp)},
                    env=child_env(""),
                )
                version = hash_tree(tmp)
                source = lane.base_model
            elif config.local_dir:
                local = Path(config.local_dir).expanduser().resolve()
                try:
                    check_model_folder(local)
                except FileNotFoundError as exc:
                    raise dg.Failure(description=f"base_model_{lane.size}: {exc}") from exc
                write_pointer(tmp, local, model_id=lane.base_model, revision=lane.revision)
                version, source, inv = hash_tree(local, exclude=(".",)), str(local), None
            else:
                endpoint = hub_endpoint(config.hub)
                if not reachable(endpoint):
                    raise dg.Failure(
                        description=(
                            f"Cannot download {lane.base_model}@{lane.revision}: {endpoint} is not reachable from "
                            f"this machine. Set the base_model_{lane.size} config local_dir to a folder holding the "
                            "model, or run where the hub can be reached."
                        )
                    )
                inv = pipes.run(
                    context=context,
                    command=runner("download_model"),
                    extras={
                        "model_id": lane.base_model,
                        "revision": lane.revision,
                        "hub": config.hub,
                        "output_dir": str(tmp),
                    },
                    env={**child_env(""), **hub.download_env()},
                )
                version, source = hash_tree(tmp, exclude=(".",)), f"{config.hub}:{lane.base_model}@{lane.revision}"
            final = publish(tmp, version[:16])
        metadata = child_metadata(inv) if inv else {}
        return dg.MaterializeResult(
            data_version=dg.DataVersion(version),
            metadata={**metadata, "path": dg.MetadataValue.path(str(model_dir(final))), "source": source},
        )

    @dg.asset(name=key("training_env"), deps=[base_model], kinds={"python"}, **common)
    def training_env(
        context: dg.AssetExecutionContext, pipes: ProcessGroupPipesClient, gpu: GpuResource
    ) -> dg.MaterializeResult:
        """What this machine offers the lane's training (torch, CUDA, GPUs, bf16, flash-attn), seen by a child
        process with the lane's CUDA_VISIBLE_DEVICES."""
        with staging(key("training_env")) as tmp:
            inv = pipes.run(
                context=context,
                command=runner("probe_env"),
                extras={"output_file": str(tmp / "facts.json")},
                env=child_env(gpu.devices_for(lane)),
            )
            facts = read_json(tmp / "facts.json")
            version = fingerprint(facts)
            publish(tmp, version)
        return dg.MaterializeResult(data_version=dg.DataVersion(version), metadata=child_metadata(inv))

    def _facts() -> dict[str, Any]:
        return read_json(upstream(key("training_env")) / "facts.json")

    def _env_check(verdict_fn: Any) -> dg.AssetCheckResult:
        passed, message = verdict_fn(_facts(), lane)
        return dg.AssetCheckResult(
            passed=passed, severity=dg.AssetCheckSeverity.ERROR, description=message, metadata={"verdict": message}
        )

    @dg.asset_check(
        asset=training_env,
        name="flash_attn_available",
        blocking=True,
        description="When the recipe packs or asks for flash_attn, its CUDA kernel imports on a GPU that supports it.",
    )
    def flash_attn_available() -> dg.AssetCheckResult:
        return _env_check(flash_attn_verdict)

    @dg.asset_check(
        asset=training_env,
        name="precision_supported",
        blocking=True,
        description="bf16 recipes need a GPU with bf16 (else: train in fp16).",
    )
    def precision_supported() -> dg.AssetCheckResult:
        return _env_check(precision_verdict)

    @dg.asset(
        name=key("lora_adapter"),
        deps=[SNAPSHOT, base_model, training_env],
        pool=pool,
        code_version=fingerprint(dataclasses.asdict(lane.recipe)),
        kinds={"pytorch"},
        **common,
    )
    def lora_adapter(
        context: dg.AssetExecutionContext,
        config: LoraAdapterConfig,
        pipes: ProcessGroupPipesClient,
        gpu: GpuResource,
        swanlab: SwanLabResource,
    ) -> dg.MaterializeResult:
        """LoRA SFT of the base model on the dataset snapshot with ms-swift, reported to SwanLab."""
        snapshot = upstream(SNAPSHOT)
        base = model_dir(upstream(key("base_model"), gpu_hint))
        facts = _facts()
        problems = [msg for ok, msg in (flash_attn_verdict(facts, lane), precision_verdict(facts, lane)) if not ok]
        if problems:
            raise dg.Failure(
                description=f"{key('training_env')} says this machine cannot train the {lane.size} "
                "recipe: " + "; ".join(problems)
            )
        recipe = lane.recipe.with_overrides(
            num_train_epochs=config.num_train_epochs, learning_rate=config.learning_rate, max_length=config.max_length
        )
        devices = gpu.devices_for(lane)
        swanlab_cfg = swanlab.run_config(lane, dataclasses.asdict(recipe))
        with staging(key("lora_adapter")) as tmp:
            run = SftRun(
                model=str(base),
                dataset=str(snapshot / "train.jsonl"),
                output_dir=str(tmp),
                recipe=recipe,
                report_to="swanlab" if swanlab_cfg else "none",
                swanlab_project=lane.swanlab_project,
                swanlab_exp_name=lane.swanlab_exp_name,
                swanlab_mode=swanlab_cfg["mode"] if swanlab_cfg else None,
                resume_from_checkpoint=config.resume_from_checkpoint,
            )
            inv = pipes.run(
                context=context,
                command=runner("train"),
                extras={"args": run.to_args(), "output_dir": str(tmp), "swanlab": swanlab_cfg},
                env={**child_env(devices), **swanlab.env()},
            )
            metadata = child_metadata(inv)
            checkpoint = Path(str(metadata.pop("last_model_checkpoint").value)).name
            version = hash_tree(
                tmp / checkpoint,
                exclude=("optimizer", "rng_state", "scheduler", "trainer_state", "training_args", "args.json"),
            )
            name = f"{context.run.run_id[:8]}-{version[:8]}"
            # The command that reproduces this run writes where this run's result now lives.
            command = dataclasses.replace(run, output_dir=str(tmp.parent / name)).to_cli(devices)
            summary = {k: v.value for k, v in metadata.items()} | {"checkpoint": checkpoint, "command": command}
            (tmp / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
            final = publish(tmp, name)
        return dg.MaterializeResult(
            data_version=dg.DataVersion(version),
            metadata={
                **metadata,
                "checkpoint": dg.MetadataValue.path(str(final / checkpoint)),
                "swift_command": dg.MetadataValue.md(f"```\n{command}\n```"),
                "dataset_sha256": read_json(snapshot / "manifest.json")["sha256"],
            },
        )

    @dg.asset(name=key("merged_model"), deps=[lora_adapter], pool=pool, kinds={"pytorch", "safetensors"}, **common)
    def merged_model(
        context: dg.AssetExecutionContext, pipes: ProcessGroupPipesClient, gpu: GpuResource
    ) -> dg.MaterializeResult:
        """The adapter merged into its base model by ``swift export`` (safetensors, 2GB shards)."""
        adapter = upstream(key("lora_adapter"), gpu_hint)
        checkpoint = adapter / "last-checkpoint"
        if not checkpoint.exists():
            raise dg.Failure(description=f"{adapter} holds no last-checkpoint: the training run did not finish")
        with staging(key("merged_model")) as tmp:
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
                    "torch_dtype": lane.infer_torch_dtype,
                },
                env=child_env(gpu.devices_for(lane)),
            )
            version = hash_tree(tmp, exclude=("args.json",))
            final = publish(tmp, version[:16])
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

    evaluation_assets, evaluation_checks = build_evaluation(lane, merged_model, base_model, common)
    _, benchmark_scores, safety_review = evaluation_assets

    publishing_assets = build_publishing(lane, lora_adapter, merged_model, benchmark_scores, safety_review, common)

    assets = [base_model, training_env, lora_adapter, merged_model, *evaluation_assets, *publishing_assets]
    checks = [flash_attn_available, precision_supported, *evaluation_checks]
    return assets, checks

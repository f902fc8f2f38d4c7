"""Training: what the machine offers a lane's recipe (with its blocking checks), the LoRA adapter trained by
ms-swift, and the adapter merged into its base model by ``swift export``."""

import dataclasses
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from mh_assets.checkpoints import clean, finished, mark_published, prepare, run_folder
from mh_assets.defs.common import (
    child_metadata,
    doc,
    gpu_hint,
    gpu_pool,
    lane_asset,
    read_json,
    runner,
    selected,
    settings_digest,
)
from mh_assets.defs.data import SNAPSHOT
from mh_assets.defs.resources import ArtifactStore, GpuResource, ProcessGroupPipesClient, SwanLabResource
from mh_assets.envcheck import Verdict, flash_attn_verdict, gpu_fit_verdict, precision_verdict
from mh_assets.lane import Lane
from mh_assets.models import disk_verdict, export_space_needed, model_dir
from mh_assets.recipes import MergeRun, SftRun, shell_lines
from mh_assets.report import loss_svg, svg_data_uri
from mh_assets.runners.train import SWANLAB_INFO
from mh_assets.store import hash_tree, tree_size
from mh_assets.swiftlog import parse_logging

# swift imports this file in every training process (workers die with torchrun; the SwanLab run in any mode)
TRAINER_PLUGIN = str(Path(__file__).parents[1] / "swift_plugins" / "trainer_process.py")
# recipe fields that change how a run is saved, logged or fed, not what it computes: a run resumes across them
BOOKKEEPING = (
    "save_steps",
    "eval_steps",
    "save_total_limit",
    "logging_steps",
    "dataloader_num_workers",
    "include_num_input_tokens_seen",
)
LINEAGE = "lineage.json"  # in a merged model's folder: the adapter, base model and snapshot versions it came from
RETRY_DELAY_S = 10  # lets a crashed run's processes release their GPU memory first

# what a checkpoint holds besides the adapter: training state that differs run to run
TRAINING_STATE = ("optimizer", "rng_state", "scheduler", "trainer_state", "training_args", "args.json")
# what DeepSpeed adds to a checkpoint: its sharded optimizer state, only needed to resume (kept in the run folder)
DEEPSPEED_STATE = ("global_step*", "latest", "zero_to_fp32.py")


class LoraAdapterConfig(dg.Config):
    num_train_epochs: float | None = None
    learning_rate: float | None = None
    max_length: int | None = None
    save_steps: int | None = None
    fresh: bool = Field(
        default=False, description="Start over at step 0 instead of resuming from the newest complete checkpoint."
    )
    keep_runs: int = Field(
        default=1, ge=0, description="Run folders of published adapters kept (unfinished runs always stay)."
    )


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
            artifacts.finalize(tmp, version)
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
    """The blocking checks that stop a lane before training on a machine that cannot run its recipe: one step for
    all three (they read the same facts, and training waits for them)."""
    key = lane.key("training_env")
    specs = [dg.AssetCheckSpec(name, asset=key, blocking=True, description=d) for name, (_, d) in ENV_CHECKS.items()]

    @dg.multi_asset_check(specs=specs, name=f"{key}_checks", can_subset=True)
    def _checks(context: dg.AssetCheckExecutionContext, artifacts: ArtifactStore) -> Iterator[dg.AssetCheckResult]:
        facts = _facts(lane, artifacts)
        for check_name in selected(context, ENV_CHECKS):
            verdict_fn = ENV_CHECKS[check_name][0]
            passed, message = verdict_fn(facts, lane)
            yield dg.AssetCheckResult(
                asset_key=key,
                check_name=check_name,
                passed=passed,
                severity=dg.AssetCheckSeverity.ERROR,
                description=message,
                metadata={"verdict": message},
            )

    return [_checks]


def _publish_run(run: Path, checkpoint: str, into: Path) -> None:
    """Copy what the published adapter needs from the run folder: the final checkpoint (with a ``last-checkpoint``
    link to it; without DeepSpeed's optimizer shards), swift's args and log, and its plots. The args forget the
    training plugin: ``swift export`` would load it again from wherever this checkout was."""
    shutil.copytree(run / checkpoint, into / checkpoint, ignore=shutil.ignore_patterns(*DEEPSPEED_STATE))
    (into / "last-checkpoint").symlink_to(checkpoint)
    for name in ("logging.jsonl", "args.json"):
        shutil.copy2(run / name, into / name)
    for args in (into / "args.json", into / checkpoint / "args.json"):
        saved = read_json(args)
        args.write_text(json.dumps({**saved, "external_plugins": []}, ensure_ascii=False, indent=2), encoding="utf-8")
    if (run / "images").is_dir():
        shutil.copytree(run / "images", into / "images")


def lora_adapter_asset(lane: Lane) -> dg.AssetsDefinition:
    """LoRA SFT of the base model on the dataset snapshot through the ``swift sft`` CLI (torchrun over the lane's
    GPUs), reported to SwanLab, progress in the event log as it trains. Checkpoints live in a run folder keyed by
    base model, dataset and recipe; materializing again after a crash or kill resumes from the newest complete
    one (config ``fresh: true`` starts over), and a failed step is retried once, resuming."""
    key = lane.key("lora_adapter")

    @lane_asset(
        lane,
        key,
        doc(lora_adapter_asset),
        deps=[SNAPSHOT, lane.key("base_model"), lane.key("training_env")],
        pool=gpu_pool(lane),
        code_version=settings_digest(dataclasses.asdict(lane.sft)),
        retry_policy=dg.RetryPolicy(max_retries=1, delay=RETRY_DELAY_S),
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
        base_version = artifacts.upstream(lane.key("base_model"), gpu_hint(lane))
        facts = _facts(lane, artifacts)
        problems = [msg for ok, msg in (verdict(facts, lane) for verdict, _ in ENV_CHECKS.values()) if not ok]
        if problems:
            raise dg.Failure(
                description=f"{lane.key('training_env')} says this machine cannot train the {lane.name} recipe: "
                + "; ".join(problems),
                allow_retries=False,
            )
        recipe = lane.sft.with_overrides(
            num_train_epochs=config.num_train_epochs,
            learning_rate=config.learning_rate,
            max_length=config.max_length,
            save_steps=config.save_steps,
        )
        devices, launch = gpu.devices_for(lane), gpu.launch(lane)
        if launch.nnodes > 1 and gpu.master_addr in ("127.0.0.1", "localhost"):
            raise dg.Failure(
                description=f"lane {lane.name} trains on {launch.nnodes} nodes: set MASTER_ADDR to node 0's address "
                "(the other nodes must reach it), not loopback",
                allow_retries=False,
            )
        manifest = read_json(snapshot / "manifest.json")
        dataset_sha = manifest["sha256"]
        result_settings = {k: v for k, v in dataclasses.asdict(recipe).items() if k not in BOOKKEEPING}
        inputs = {"base": base_version.name, "dataset": dataset_sha, "recipe": result_settings}
        run_dir = run_folder(artifacts.store.folder(key), settings_digest({**inputs, "world": launch.world_size}))
        # a retry, or a re-execution of a failed run from the UI, resumes what the first attempt began, even when
        # that attempt was asked to start fresh
        first_attempt = context.retry_number == 0 and context.run.parent_run_id is None
        try:
            start = prepare(run_dir, fresh=config.fresh and first_attempt)
        except RuntimeError as exc:
            raise dg.Failure(description=str(exc)) from None
        resumed = start.resume_from.step if start.resume_from else None
        context.log.info(
            f"run folder {run_dir}: "
            + (f"resuming from step {resumed}" if start.resume_from else "starting at step 0")
            + (f"; removed {', '.join(start.removed)}" if start.removed else "")
        )
        swanlab_cfg = swanlab.run_config(lane, dataclasses.asdict(recipe), artifacts.store.root)
        run = SftRun(
            model=str(model_dir(base_version)),
            dataset=str(snapshot / "train.jsonl"),
            val_dataset=str(snapshot / "val.jsonl") if manifest.get("rows_val") else None,
            output_dir=str(run_dir),
            recipe=recipe,
            report_to="swanlab" if swanlab_cfg else "none",
            swanlab_project=lane.swanlab.project,
            swanlab_exp_name=lane.swanlab.exp_name,
            swanlab_mode=swanlab_cfg["mode"] if swanlab_cfg else None,
            resume_from_checkpoint=str(start.resume_from.path) if start.resume_from else None,
            external_plugins=(TRAINER_PLUGIN,),
        )
        env = {**artifacts.child_env(devices), **swanlab.env(), **launch.env(node_rank=0)}
        if swanlab_cfg:
            env["MH_SWANLAB_RUN"] = json.dumps(swanlab_cfg | {"info_file": str(run_dir / SWANLAB_INFO)})
        if start.resume_from and finished(start.resume_from):
            # it died after its last checkpoint, before publishing: resuming would train nothing and name no checkpoint
            context.log.info(f"the run finished at step {resumed} before it was published: publishing that")
            figures = {
                **parse_logging(run_dir / "logging.jsonl").figures(),
                "last_model_checkpoint": str(start.resume_from.path),
            }
        else:
            inv = pipes.run(
                context=context,
                command=runner("train"),
                extras={"args": run.to_args(), "output_dir": str(run_dir)},
                env=env,
                max_runtime_s=lane.gpu.max_step_s,
            )
            figures = {k: v.value for k, v in child_metadata(inv).items()}
        checkpoint = Path(str(figures.pop("last_model_checkpoint"))).name
        log = parse_logging(run_dir / "logging.jsonl")
        # what reproduces this run from scratch, and what each node runs for this attempt (with its resume point)
        command = dataclasses.replace(run, resume_from_checkpoint=None).to_cli(devices, launch)
        node_commands = [run.to_cli(devices, launch, rank) for rank in range(launch.nnodes)]
        with artifacts.staging(key) as tmp:
            _publish_run(run_dir, checkpoint, tmp)
            version = hash_tree(tmp / checkpoint, exclude=TRAINING_STATE)
            summary = figures | {
                "checkpoint": checkpoint,
                "command": command,
                "node_commands": node_commands,
                "run_folder": str(run_dir),
                "base_model_version": base_version.name,
                "dataset_snapshot": snapshot.name,
                "resumed_from_step": resumed,
                "global_step": log.steps,
                "loss_history": [{"step": step, "loss": loss} for step, loss in log.losses],
                "val_loss_history": [{"step": step, "loss": loss} for step, loss in log.val_losses],
            }
            (tmp / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
            final = artifacts.finalize(tmp, f"{context.run.run_id[:8]}-{version[:8]}")
        mark_published(run_dir, final)
        for removed in clean(artifacts.store.folder(key), keep=config.keep_runs):
            context.log.info(f"removed the run folder of an adapter published earlier: {removed}")
        if "swanlab_url" in figures:
            figures["swanlab_url"] = dg.MetadataValue.url(str(figures["swanlab_url"]))
        return dg.MaterializeResult(
            data_version=dg.DataVersion(version),
            metadata={
                **figures,
                "checkpoint": dg.MetadataValue.path(str(final / checkpoint)),
                "resumed_from_step": resumed,
                "global_step": log.steps,
                "world_size": launch.world_size,
                "swift_command": dg.MetadataValue.md(f"```\n{shell_lines(command)}\n```"),
                "loss_curve": dg.MetadataValue.md(
                    f"![training and validation loss]({svg_data_uri(loss_svg(log.losses, log.val_losses))})"
                ),
                "dataset_sha256": dataset_sha,
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
        summary = read_json(adapter / "summary.json")
        # the base model version the adapter was trained on, fetched here if it lives on an object store
        base_key = lane.key("base_model")
        base_version = summary.get("base_model_version") or artifacts.upstream(base_key).name
        base = model_dir(artifacts.upstream_version(base_key, base_version, f"the base of adapter {adapter.name}"))
        artifacts.store.folder(key).mkdir(parents=True, exist_ok=True)
        if problem := disk_verdict(artifacts.store.folder(key), export_space_needed(base)):
            raise dg.Failure(description=f"{key} cannot merge {base.name}: {problem}")
        with artifacts.staging(key) as tmp:
            tmp.rmdir()  # swift export silently skips saving into an existing folder
            run = MergeRun(
                adapters=str(checkpoint.resolve()),
                output_dir=str(tmp),
                device_map=None if lane.gpu.required else "cpu",
                model=str(base),
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
                max_runtime_s=lane.gpu.max_step_s,
            )
            lineage = {
                "adapter": adapter.name,
                "base_model": base_version,
                "dataset_snapshot": summary.get("dataset_snapshot"),
            }
            (tmp / LINEAGE).write_text(json.dumps(lineage, indent=2), encoding="utf-8")
            version = hash_tree(tmp, exclude=("args.json", LINEAGE))
            final = artifacts.finalize(tmp, version[:16])
        files, size = tree_size(final)
        return dg.MaterializeResult(
            data_version=dg.DataVersion(version),
            metadata={
                **child_metadata(inv),
                "path": dg.MetadataValue.path(str(final)),
                "files": files,
                "bytes": size,
                "swift_command": dg.MetadataValue.md(f"```\n{shell_lines(run.to_cli())}\n```"),
            },
        )

    return _asset

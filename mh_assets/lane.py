"""What a lane is: one base model taken through the whole graph, described by one YAML file.

A lane lives in ``mh_assets/defs/lanes/<folder>/defs.yaml`` (``type: mh_assets.components.LaneComponent``); its
``attributes`` are a ``Lane``. The component builds the assets from it; plain code (the snapshot's length plan,
``python -m mh_assets.where``) reads the same files with ``load_lanes``. Plain module: pydantic, no dagster, no torch.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from mh_assets.benchmarks import Gates
from mh_assets.recipes import RECIPES, Launch, SftRecipe
from mh_assets.yamlio import YamlError, load_yaml, parse_as

TINY_MODEL_ID = "builtin:tiny-qwen2"
LANES_DIR = Path(__file__).parent / "defs" / "lanes"
COMPONENT_TYPE = "mh_assets.components.LaneComponent"
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


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _yaml_type(hint: Any) -> Any:
    """The type a YAML file writes for a recipe field (a list where the recipe keeps a tuple)."""
    return list[typing.get_args(hint)[0]] if typing.get_origin(hint) is tuple else hint


# Every SftRecipe field, optional: a lane states only how its recipe differs from the named one it starts from.
_RecipeOverrides: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "_RecipeOverrides",
    __base__=_Spec,
    **{name: (_yaml_type(hint) | None, None) for name, hint in typing.get_type_hints(SftRecipe).items()},
)


class RecipeSpec(_RecipeOverrides):  # type: ignore[misc,valid-type]
    """``base`` names a recipe of ``mh_assets.recipes.RECIPES``; every other field overrides it."""

    base: str = Field(description=f"One of {sorted(RECIPES)}.")

    @field_validator("base")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in RECIPES:
            raise ValueError(f"unknown recipe {value!r} (known: {', '.join(sorted(RECIPES))})")
        return value

    def resolve(self) -> SftRecipe:
        # every field the file sets, null included (``attn_impl: null`` turns flash attention off)
        overrides = self.model_dump(exclude={"base"}, exclude_unset=True)
        return dataclasses.replace(
            RECIPES[self.base], **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
        )


class K8sPlacement(_Spec):
    """Where a GPU step's pod runs on Kubernetes (one pod per step under dagster-k8s's k8s_job_executor)."""

    memory: str = Field(default="64Gi", description="Host memory of the step's pod (a Kubernetes quantity).")
    cpu: str | None = Field(default="8", description="CPUs of the step's pod.")
    node_selector: dict[str, str] = Field(default={}, description="Labels of the GPU nodes it may run on.")
    tolerations: list[dict[str, str | int]] = Field(default=[], description="Taints of those nodes it tolerates.")


class GpuNeeds(_Spec):
    count: int = Field(default=0, description="GPUs one run needs on each node (NPROC_PER_NODE); 0: CPU only.")
    nodes: int = Field(default=1, description="Machines training runs on (NNODES); Dagster's step runs on node 0.")
    min_memory_gib: int = Field(default=0, description="Memory each of them needs.")
    default_devices: str = Field(default="", description="CUDA_VISIBLE_DEVICES unless the gpu resource says.")
    max_step_hours: float | None = Field(default=None, description="A step running longer is stopped and fails.")
    pool: str | None = Field(
        default=None, description="Concurrency pool of its heavy steps; default: gpu with GPUs, none on CPU."
    )
    k8s: K8sPlacement = K8sPlacement()

    @field_validator("count", "min_memory_gib")
    @classmethod
    def _not_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must be 0 or more")
        return value

    @field_validator("nodes")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    @field_validator("max_step_hours")
    @classmethod
    def _positive_hours(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("must be more than 0 hours (or null: no limit)")
        return value

    @property
    def required(self) -> bool:
        return self.count > 0

    @property
    def max_step_s(self) -> float | None:
        return self.max_step_hours * 3600 if self.max_step_hours else None

    def launch(self, master_addr: str = "127.0.0.1", master_port: int = 29500) -> Launch:
        """How ``swift sft`` starts: torchrun with one process per GPU on every node; one process on CPU."""
        return Launch(max(self.count, 1), self.nodes, master_addr, master_port)


class SwanLab(_Spec):
    project: str = "mh-sft"
    exp_name: str
    mode: Literal["cloud", "local", "offline", "disabled"] = "cloud"


class Evaluation(_Spec):
    mode: Literal["local", "service", "endpoint"] = Field(default="service", description="How the model is reached.")
    deploy_backend: Literal["transformers", "vllm", "sglang", "lmdeploy"] | None = Field(
        default=None,
        description="`swift deploy --infer_backend` (service mode); unset: vllm on a GPU lane, transformers on CPU.",
    )
    served_model_name: str
    limits: dict[str, int] = Field(default={}, description="Benchmark -> samples evaluated.")
    max_tokens: int = Field(default=512, description="Longest reply generated.")
    concurrency: int | None = Field(
        default=None, description="Requests in flight; unset: 32 against a server (service, endpoint), 1 locally."
    )
    torch_dtype: str = "bfloat16"
    lm_eval_tasks: list[str] = Field(
        default=[],
        description="A team's own lm-eval task YAMLs (paths), run as written beside the shipped pceb_mcq_ll.",
    )
    reevaluate_cron: str = Field(default="0 3 * * 1", description="When the fine-tuned model is evaluated again.")

    @field_validator("max_tokens", "concurrency")
    @classmethod
    def _positive(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError("must be at least 1")
        return value

    def backend(self, gpus: int) -> str:
        """The ``swift deploy`` backend (ms-swift 4 spells them as we do): the file's, else vLLM on a lane with
        GPUs and transformers on a CPU lane."""
        return self.deploy_backend or ("vllm" if gpus > 0 else "transformers")

    @staticmethod
    def default_concurrency(mode: str) -> int:
        """Requests in flight unless set: 32 against a server (service, endpoint), 1 for a local model."""
        return 1 if mode == "local" else 32

    @field_validator("reevaluate_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(f"{value!r} is not a cron expression of five fields (minute hour day month weekday)")
        return value


class Lane(_Spec):
    """One lane: its name (asset keys are ``<stage>_<name>``), base model, recipe, GPU needs, SwanLab run,
    evaluation, hub repository and gates."""

    name: str = Field(description="Lower case letters, digits and _; asset keys are <stage>_<name>.")
    base_model: str = Field(description=f"Hub model id, or {TINY_MODEL_ID} (built locally).")
    revision: str = Field(description="The pinned hub revision (branch, tag or commit).")
    recipe: RecipeSpec
    gpu: GpuNeeds = GpuNeeds()
    swanlab: SwanLab
    evaluation: Evaluation
    hub_repo_id: str
    gates: Gates = Gates()

    @field_validator("name")
    @classmethod
    def _key_safe(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_]*", value):
            raise ValueError(f"{value!r}: use lower case letters, digits and _ (it becomes part of asset keys)")
        return value

    @model_validator(mode="after")
    def _batch_splits(self) -> Lane:
        self.recipe.resolve().for_world_size(self.gpu.launch().world_size)  # raises, naming the numbers
        return self

    @functools.cached_property
    def sft(self) -> SftRecipe:
        """The resolved training recipe, its global batch split over the lane's GPUs."""
        return self.recipe.resolve().for_world_size(self.gpu.launch().world_size)

    @property
    def is_builtin(self) -> bool:
        return self.base_model == TINY_MODEL_ID

    def key(self, stage: str) -> str:
        """The asset key of one stage of this lane, e.g. ``lora_adapter_7b``."""
        return f"{stage}_{self.name}"

    @property
    def group(self) -> str:
        return f"model_{self.name}"


def lane_files(root: Path = LANES_DIR) -> list[Path]:
    """Every ``defs.yaml`` under ``root`` whose component is a lane."""
    found = []
    for path in sorted(root.rglob("defs.yaml")):
        doc = load_yaml(path)
        if isinstance(doc, dict) and doc.get("type") == COMPONENT_TYPE:
            found.append(path)
    return found


def load_lane(path: Path) -> Lane:
    """The lane of one ``defs.yaml``; a wrong field raises naming the file, line and field."""
    doc = load_yaml(path)
    attributes = doc.get("attributes") if isinstance(doc, dict) else None
    if not isinstance(attributes, dict):
        raise YamlError(f"{path}: a lane file needs `attributes:` (the lane's fields)")
    return parse_as(Lane, attributes, path, prefix="attributes")


def load_lanes(root: Path = LANES_DIR) -> dict[str, Lane]:
    """Every lane under ``root`` by name; two files naming the same lane raise."""
    lanes: dict[str, Lane] = {}
    for path in lane_files(root):
        lane = load_lane(path)
        if lane.name in lanes:
            raise YamlError(f"{path}: lane {lane.name!r} is also defined by another file under {root}")
        lanes[lane.name] = lane
    return lanes

"""Resources: the artifact store, the Pipes client that runs every heavy step, GPU placement, SwanLab, the hubs,
the dataset source and what evaluation calls on; ``resources()`` binds them to their environment variables."""

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from subprocess import PIPE, TimeoutExpired
from typing import IO, Any

import dagster as dg
from pydantic import Field, PrivateAttr

from mh_assets.lane import Lane
from mh_assets.procs import child_env, inherited_env, start_group, stop_group
from mh_assets.recipes import Launch
from mh_assets.runners import ERROR_KEY
from mh_assets.store import MissingUpstream, Store, default_store, open_store

SWANLAB_MODES = ("cloud", "local", "offline", "disabled")
OUTPUT_TAIL_LINES = 40


def _drain(stream: IO[bytes], tail: deque[str]) -> None:
    """Read a child's pipe to the end (a full pipe would block the child), keeping its last lines."""
    for raw in iter(stream.readline, b""):
        tail.append(raw.decode("utf-8", "replace").rstrip())
    stream.close()


class ProcessGroupPipesClient(dg.PipesSubprocessClient):
    """``PipesSubprocessClient`` whose child runs in its own process group, stopped as a whole when the step ends
    (after ``termination_timeout_seconds`` of grace, then killed), with secrets stripped from its environment.

    ``swift`` re-execs python and dataloaders fork workers; a plain ``Popen`` would leave them running after an
    interrupted or failed step (and a GPU still held). With ``forward_stdio=False`` the child's output is read to
    the end and its last lines go into the failure message.
    """

    def run(  # type: ignore[override]
        self,
        *,
        context: dg.AssetExecutionContext | dg.OpExecutionContext,
        command: list[str],
        extras: dict | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        max_runtime_s: float | None = None,
    ) -> dg.PipesClientCompletedInvocation:
        """Run ``command`` to its end; past ``max_runtime_s`` its whole group is stopped and the step fails."""
        tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
        with dg.open_pipes_session(
            context=context, context_injector=self.context_injector, message_reader=self.message_reader, extras=extras
        ) as session:
            full_env = {**inherited_env(), **self.env, **(env or {}), **session.get_bootstrap_env_vars()}
            stdio = None if self.forward_stdio else PIPE
            proc = start_group(command, full_env, cwd=cwd or self.cwd, stdout=stdio, stderr=stdio)
            readers = [
                threading.Thread(target=_drain, args=(stream, tail), daemon=True)
                for stream in (proc.stdout, proc.stderr)
                if stream is not None
            ]
            for reader in readers:
                reader.start()
            try:
                returncode = proc.wait(timeout=max_runtime_s)
            except TimeoutExpired:
                returncode = None
            finally:
                stop_group(proc, grace_s=self.termination_timeout_seconds)
                for reader in readers:
                    reader.join(timeout=self.termination_timeout_seconds)
        if returncode is None:
            raise dg.Failure(
                description=f"{command[-1]} ran past its limit of {max_runtime_s / 3600:.4g} h (the lane's "
                "gpu.max_step_hours) and was stopped with its whole process group",
                metadata={"command": " ".join(command), "max_runtime_s": max_runtime_s},
                allow_retries=False,  # a retry would only double the limit
            )
        if returncode != 0:  # after the session closed: every message the child sent has been read
            errors = [m[ERROR_KEY] for m in session.get_custom_messages() if isinstance(m, dict) and ERROR_KEY in m]
            output = "\n".join(tail)
            raise dg.Failure(
                description=f"{command[-1]} failed with exit code {returncode}: "
                + ("; ".join(errors) if errors else "no message (its output is in the step log)"),
                metadata={"command": " ".join(command), "exit_code": returncode,
                          **({"output_tail": dg.MetadataValue.md(f"```\n{output}\n```")} if output else {})},
            )  # fmt: skip
        return dg.PipesClientCompletedInvocation(session)


class ArtifactStore(dg.ConfigurableResource):
    """Where every asset's versions live (``<root>/<asset>/<version>``, ``latest`` pointing at the newest)."""

    root: str = Field(
        default="",
        description="A folder, or an object store's URL (s3://bucket/prefix; S3-compatible stores through "
        "AWS_ENDPOINT_URL); empty: $MH_ARTIFACTS_DIR, else ./artifacts.",
    )
    cache: str = Field(
        default="",
        description="An object store's local copy, where steps build and read; empty: ~/.cache/mh-assets/<url>.",
    )

    _log: Any = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._log = context.log

    @property
    def store(self) -> Store:
        return open_store(self.root, self.cache) if self.root else default_store()

    def latest(self, name: str) -> Path | None:
        return self.store.latest(name)

    def upstream(self, name: str, hint: str = "") -> Path:
        """The newest version of an asset this step reads; a step failure naming what to materialize if none."""
        try:
            return self.store.require(name, hint)
        except MissingUpstream as exc:
            raise dg.Failure(description=str(exc)) from None

    def upstream_version(self, name: str, version: str, why: str) -> Path:
        """One version of an asset this step reads (fetched if it is remote); a step failure if it is gone."""
        found = self.store.version(name, version)
        if found is None:
            raise dg.Failure(description=f"{name} version {version} ({why}) is not at {self.store.location(name)}")
        return found

    def upstream_location(self, name: str) -> str:
        """Where the newest version of an asset is (its URL on an object store), without fetching it."""
        version = self.store.latest_version(name)
        if version is None:
            self.upstream(name)  # the usual failure, naming what to materialize
        return self.store.location(name, version)

    @contextmanager
    def staging(self, name: str) -> Iterator[Path]:
        with self.store.staging(name) as tmp:
            yield tmp

    def finalize(self, staged: Path, version: str) -> Path:
        store = self.store
        final = store.finalize(staged, version)
        if store.remote and self._log is not None:
            name = final.parent.relative_to(store.root).as_posix()
            self._log.info(f"published {store.location(name, version)} (local copy {final})")
        return final

    def child_env(self, cuda_visible_devices: str) -> dict[str, str]:
        """A child's environment: caches under this store, the given GPUs only."""
        return child_env(cuda_visible_devices, self.store.root)


class GpuResource(dg.ConfigurableResource):
    """Which GPUs a lane's steps see (``CUDA_VISIBLE_DEVICES``). CPU lanes always see none."""

    visible_devices: str | None = None
    master_addr: str = Field(default="127.0.0.1", description="Node 0's address, for lanes on several nodes.")
    master_port: int = Field(default=29500, description="The port torchrun's rendezvous listens on, on node 0.")

    def devices_for(self, lane: Lane) -> str:
        if not lane.gpu.required:
            return ""
        return self.visible_devices if self.visible_devices is not None else lane.gpu.default_devices

    def launch(self, lane: Lane) -> Launch:
        return lane.gpu.launch(self.master_addr, self.master_port)


class SwanLabResource(dg.ConfigurableResource):
    """SwanLab reporting. ``mode`` None means the lane's default (cloud for GPU lanes, local for tiny)."""

    mode: str | None = None
    api_key: str | None = None
    log_dir: str | None = None

    def mode_for(self, lane: Lane) -> str:
        mode = self.mode or lane.swanlab.mode
        if mode not in SWANLAB_MODES:
            raise dg.Failure(f"SwanLab mode {mode!r} is not one of {SWANLAB_MODES}")
        if mode == "cloud" and not self.api_key:
            raise dg.Failure(
                "SwanLab cloud mode needs SWANLAB_API_KEY in the environment or .env; "
                "or set the swanlab resource's mode to local, offline or disabled."
            )
        return mode

    def run_config(self, lane: Lane, config: dict, artifacts: Path) -> dict | None:
        """What the training child needs to start the run (no secret: the key travels in ``env()``)."""
        mode = self.mode_for(lane)
        if mode == "disabled":
            return None
        return {
            "mode": mode,
            "project": lane.swanlab.project,
            "exp_name": lane.swanlab.exp_name,
            "log_dir": self.log_dir or str(artifacts / "swanlog"),
            "config": config,
        }

    def env(self) -> dict[str, str]:
        return {"SWANLAB_API_KEY": self.api_key} if self.api_key else {}


class HubResource(dg.ConfigurableResource):
    """Hub credentials and endpoints; tokens come from the environment through ``EnvVar`` and go only to the SDKs."""

    modelscope_token: str | None = None
    hf_token: str | None = None
    modelscope_endpoint: str | None = None
    hf_endpoint: str | None = None

    def download_env(self) -> dict[str, str]:
        """What a child that downloads from the hubs needs, and nothing else."""
        pairs = (("MODELSCOPE_API_TOKEN", self.modelscope_token), ("HF_TOKEN", self.hf_token))
        return {name: value for name, value in pairs if value}


class DatasetSourceResource(dg.ConfigurableResource):
    """The dataset a team trains on: a path, ``modelscope:ID[@REV]`` or ``hf:ID[@REV]``; empty: the shipped sample."""

    source: str = ""


class EvalResource(dg.ConfigurableResource):
    """What evaluation may call on besides the model: the counselling judge, the safety judge(s), and local mirrors
    of C-Eval / CMMLU / SafetyBench."""

    judge_url: str = ""
    judge_model: str = Field(default="", description="Comma-separated: two models make two counselling judges.")
    judge_samples: int = Field(default=2, description="Samples per judge and turn (at least 2 with one judge).")
    judge_api_key: str | None = None
    safety_judge_url: str = ""
    safety_judge_models: str = Field(default="", description="Comma-separated: two models make two judges.")
    safety_judge_samples: int = Field(default=2, description="Samples per judge and probe (at least 2 with one judge).")
    safety_judge_api_key: str | None = None
    endpoint_api_key: str | None = None
    ceval_path: str = ""
    cmmlu_path: str = ""
    safetybench_path: str = ""
    cpsyexam_path: str = Field(default="", description="A CPsyExam copy: <root>/dev/<task>.json (README).")
    pceb_path: str = Field(default="", description="A counsellor-exam bank in the shipped pceb_mcq format.")

    def secrets_env(self) -> dict[str, str]:
        pairs = (
            ("MH_JUDGE_API_KEY", self.judge_api_key),
            ("MH_SAFETY_JUDGE_API_KEY", self.safety_judge_api_key),
            ("MH_EVAL_API_KEY", self.endpoint_api_key),
        )
        return {name: value for name, value in pairs if value}

    def judge(self) -> dict[str, Any] | None:
        """The counselling judges (``judge_model`` may name several, comma-separated), or None."""
        return self._judges(self.judge_url, self.judge_model, self.judge_samples)

    def safety_judge(self) -> dict[str, Any] | None:
        """The safety judges, or None when neither a safety judge nor the counselling judge is configured."""
        return self._judges(
            self.safety_judge_url or self.judge_url,
            self.safety_judge_models or self.judge_model,
            self.safety_judge_samples,
        )

    @staticmethod
    def _judges(url: str, models: str, samples: int) -> dict[str, Any] | None:
        names = [m.strip() for m in models.split(",") if m.strip()]
        if not url or not names:
            return None
        # one judge is asked at least twice per item, so an unreadable or odd verdict does not decide alone
        return {
            "judges": [{"api_url": url, "model": m} for m in names],
            "samples": max(samples, 2 if len(names) == 1 else 1),
        }

    def mirrors(self) -> dict[str, str]:
        pairs = (
            ("ceval", self.ceval_path),
            ("cmmlu", self.cmmlu_path),
            ("safety_bench", self.safetybench_path),
            ("cpsyexam", self.cpsyexam_path),
            ("pceb", self.pceb_path),
        )
        return {k: v for k, v in pairs if v}


def from_env(**variables: Any) -> dict[str, Any]:
    """Resource fields bound to environment variables (a name, or ``dg.EnvVar.int(name)``): a variable set where
    the code location loads is bound as ``dg.EnvVar`` and its value read when each run starts (in the run's own
    environment); one not set there leaves its field's default, so a machine without a hub token or a judge still
    loads and runs."""
    out: dict[str, Any] = {}
    for field, var in variables.items():
        env = dg.EnvVar(var) if isinstance(var, str) else var
        if dg.EnvVar(env.env_var_name).get_value() is not None:
            out[field] = env
    return out


@dg.definitions
def resources() -> dg.Definitions:
    """Every resource, its settings and secrets read from the environment (or the project's .env) at run time."""
    return dg.Definitions(
        resources={
            "artifacts": ArtifactStore(**from_env(root="MH_ARTIFACTS_DIR", cache="MH_ARTIFACTS_CACHE")),
            "pipes": ProcessGroupPipesClient(),
            "dataset": DatasetSourceResource(**from_env(source="MH_DATASET_SOURCE")),
            "gpu": GpuResource(
                **from_env(
                    visible_devices="MH_GPU_DEVICES",
                    master_addr="MASTER_ADDR",
                    master_port=dg.EnvVar.int("MASTER_PORT"),
                )
            ),
            "evaluation": EvalResource(
                **from_env(
                    judge_url="MH_JUDGE_URL",
                    judge_model="MH_JUDGE_MODEL",
                    judge_samples=dg.EnvVar.int("MH_JUDGE_SAMPLES"),
                    judge_api_key="MH_JUDGE_API_KEY",
                    safety_judge_url="MH_SAFETY_JUDGE_URL",
                    safety_judge_models="MH_SAFETY_JUDGE_MODELS",
                    safety_judge_samples=dg.EnvVar.int("MH_SAFETY_JUDGE_SAMPLES"),
                    safety_judge_api_key="MH_SAFETY_JUDGE_API_KEY",
                    endpoint_api_key="MH_EVAL_API_KEY",
                    ceval_path="MH_CEVAL_PATH",
                    cmmlu_path="MH_CMMLU_PATH",
                    safetybench_path="MH_SAFETYBENCH_PATH",
                    cpsyexam_path="MH_CPSYEXAM_PATH",
                    pceb_path="MH_PCEB_PATH",
                )
            ),
            "hub": HubResource(
                **from_env(
                    modelscope_token="MODELSCOPE_API_TOKEN",
                    hf_token="HF_TOKEN",
                    modelscope_endpoint="MODELSCOPE_ENDPOINT",
                    hf_endpoint="HF_ENDPOINT",
                )
            ),
            "swanlab": SwanLabResource(**from_env(mode="MH_SWANLAB_MODE", api_key="SWANLAB_API_KEY")),
        }
    )

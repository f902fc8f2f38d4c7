"""Resources: the Pipes client that runs every heavy step, GPU placement and SwanLab reporting."""

import threading
from collections import deque
from subprocess import PIPE
from typing import IO

import dagster as dg

from mh_assets.lanes import Lane
from mh_assets.procs import inherited_env, start_group, stop_group
from mh_assets.runners import ERROR_KEY
from mh_assets.store import artifacts_dir

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
    ) -> dg.PipesClientCompletedInvocation:
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
                returncode = proc.wait()
            finally:
                stop_group(proc, grace_s=self.termination_timeout_seconds)
                for reader in readers:
                    reader.join(timeout=self.termination_timeout_seconds)
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


class GpuResource(dg.ConfigurableResource):
    """Which GPUs a lane's steps see (``CUDA_VISIBLE_DEVICES``). CPU lanes always see none."""

    visible_devices: str | None = None

    def devices_for(self, lane: Lane) -> str:
        if not lane.gpu.required:
            return ""
        return self.visible_devices if self.visible_devices is not None else lane.gpu.default_devices


class SwanLabResource(dg.ConfigurableResource):
    """SwanLab reporting. ``mode`` None means the lane's default (cloud for GPU lanes, local for tiny)."""

    mode: str | None = None
    api_key: str | None = None
    log_dir: str | None = None

    def mode_for(self, lane: Lane) -> str:
        mode = self.mode or lane.swanlab_mode
        if mode not in SWANLAB_MODES:
            raise dg.Failure(f"SwanLab mode {mode!r} is not one of {SWANLAB_MODES}")
        if mode == "cloud" and not self.api_key:
            raise dg.Failure(
                "SwanLab cloud mode needs SWANLAB_API_KEY in the environment or .env; "
                "or set the swanlab resource's mode to local, offline or disabled."
            )
        return mode

    def run_config(self, lane: Lane, config: dict) -> dict | None:
        """What the training child needs to start the run (no secret: the key travels in ``env()``)."""
        mode = self.mode_for(lane)
        if mode == "disabled":
            return None
        return {
            "mode": mode,
            "project": lane.swanlab_project,
            "exp_name": lane.swanlab_exp_name,
            "log_dir": self.log_dir or str(artifacts_dir() / "swanlog"),
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

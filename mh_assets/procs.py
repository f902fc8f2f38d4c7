"""Child processes in their own process group, always cleaned up; and the environment every child gets.

``swift`` re-execs a child python and dataloaders fork workers: killing one PID orphans the rest, so children
start a new session and the whole group is stopped. Plain module: no dagster, no torch.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1,localhost,::1"
# Never inherited by a child: each step passes on only the secrets it needs (least privilege; and the SDKs log in
# to their hubs whenever a token is present, which fails offline).
SECRET_ENV = (
    "SWANLAB_API_KEY",
    "MODELSCOPE_API_TOKEN",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "MH_JUDGE_API_KEY",
    "MH_SAFETY_JUDGE_API_KEY",
    "MH_EVAL_API_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)


# Set by whatever launched this process (a torchrun, a cluster's pod); a child would take them as its own launch
LAUNCH_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "NPROC_PER_NODE", "NNODES", "NODE_RANK",
              "MASTER_ADDR", "MASTER_PORT")  # fmt: skip


def inherited_env() -> dict[str, str]:
    """This process's environment without the secrets and without any distributed launch: a training child gets
    its launch from its lane."""
    return {k: v for k, v in os.environ.items() if k not in SECRET_ENV and k not in LAUNCH_ENV}


PR_SET_PDEATHSIG = 1
# looked up here, not in the forked child (where a thread of the parent may have held the loader's lock)
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _child_setup(parent: int) -> None:
    """In the child before exec: stoppable signals, and a SIGTERM from the kernel when the parent dies."""
    # Background shells may hand down SIGINT/SIGTERM as ignored; a child must be stoppable.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # A new session escapes the parent's process group: if the parent is killed outright (SIGKILL, a crash), the
    # group would run on with nobody to stop it. Linux tells the child instead; the child then stops its group.
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)


def start_group(command: Sequence[str], env: Mapping[str, str], cwd: str | None = None, **kwargs) -> subprocess.Popen:
    """Start ``command`` as the leader of a new process group (session) that gets SIGTERM if this process dies."""
    parent = os.getpid()
    return subprocess.Popen(
        list(command),
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
        preexec_fn=lambda: _child_setup(parent),
        **kwargs,
    )


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the child's whole process group, then SIGKILL whatever is left after ``grace_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        proc.poll()  # reap the direct child, or its zombie keeps the group "alive"
        if not _group_alive(proc.pid):
            return
        os.killpg(proc.pid, sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            proc.poll()
            if not _group_alive(proc.pid):
                return
            time.sleep(0.1)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(cuda_visible_devices: str, root: Path) -> dict[str, str]:
    """Caches and logs under the artifacts root (not ``~``), loopback never proxied, the lane's GPUs only."""
    cache = root / ".cache"
    no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY", ""), LOOPBACK]))
    return {
        "MODELSCOPE_CACHE": os.environ.get("MODELSCOPE_CACHE", str(cache / "modelscope")),
        "HF_HOME": os.environ.get("HF_HOME", str(cache / "huggingface")),
        "MPLCONFIGDIR": str(cache / "matplotlib"),
        "SWANLAB_LOGDIR": str(root / "swanlog"),
        "TOKENIZERS_PARALLELISM": "false",
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
        "CUDA_VISIBLE_DEVICES": cuda_visible_devices,
        "MH_ARTIFACTS_DIR": str(root),
    }

"""Where a lane's base model comes from, and where its files are. Plain module: no dagster, no torch."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

HUB_ENDPOINTS = {
    "modelscope": ("MODELSCOPE_ENDPOINT", "https://www.modelscope.cn"),
    "huggingface": ("HF_ENDPOINT", "https://huggingface.co"),
}
POINTER = "source.json"


def hub_endpoint(hub: str) -> str:
    env, default = HUB_ENDPOINTS[hub]
    value = os.environ.get(env, default)
    return value if "://" in value else f"https://{value}"


def reachable(url: str, timeout_s: float = 5.0) -> bool:
    """Whether a TCP connection to the URL's host opens within ``timeout_s`` (no request is sent)."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def write_pointer(version_dir: Path, model_dir: Path, **info: str) -> None:
    """Record a model that stays where it is (a configured local folder) instead of copying it."""
    (version_dir / POINTER).write_text(json.dumps({"path": str(model_dir), **info}, indent=2), encoding="utf-8")


def model_dir(version_dir: Path) -> Path:
    """The folder holding a base model version's files: the version folder itself, or the one it points to."""
    pointer = version_dir / POINTER
    if pointer.exists():
        return Path(json.loads(pointer.read_text(encoding="utf-8"))["path"])
    return version_dir


def check_model_folder(path: Path) -> None:
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a model folder: it has no config.json")

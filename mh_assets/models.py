"""Where a lane's base model comes from, and where its files are. Plain module: no dagster, no torch."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
from pathlib import Path
from urllib.parse import urlparse

from mh_assets.store import hash_tree

HUB_ENDPOINTS = {
    "modelscope": ("MODELSCOPE_ENDPOINT", "https://www.modelscope.cn"),
    "huggingface": ("HF_ENDPOINT", "https://huggingface.co"),
}
POINTER = "source.json"
MODEL_HASHES = ".cache/model-hashes"  # under the artifacts root


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


# What loading a tokenizer writes into the config it saves: how it was found on this machine, not what it is
LOAD_STATE_KEYS = ("local_files_only", "is_local", "_commit_hash", "cache_dir")


def strip_load_state(model_folder: Path) -> list[str]:
    """Remove load-time keys (``local_files_only`` follows HF_HUB_OFFLINE) from a saved tokenizer config, so a
    model's files, and the version hashed from them, do not depend on the environment it was saved in."""
    path = model_folder / "tokenizer_config.json"
    if not path.is_file():
        return []
    config = json.loads(path.read_text(encoding="utf-8"))
    removed = [key for key in LOAD_STATE_KEYS if key in config]
    if removed:
        kept = {k: v for k, v in config.items() if k not in removed}
        path.write_text(json.dumps(kept, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return removed


def _manifest(folder: Path) -> list[tuple[str, int, int]]:
    """``(relative path, size, mtime_ns)`` of every file the content hash covers (hidden paths are hub caches)."""
    return sorted(
        (p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file() and not p.relative_to(folder).as_posix().startswith(".")
    )


def cached_content_hash(folder: Path, cache_dir: Path) -> tuple[str, bool]:
    """The content hash of a model folder, and whether it came from the cache. A 65 GB model is read once: the hash
    is cached under its file manifest (names, sizes, modification times), so it is read again only when a file
    changes, is added or removed."""
    key = hashlib.sha256(json.dumps(_manifest(folder)).encode()).hexdigest()
    entry = cache_dir / f"{key}.json"
    if entry.is_file():
        return json.loads(entry.read_text(encoding="utf-8"))["sha256"], True
    digest = hash_tree(folder, exclude=(".",))
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = entry.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"sha256": digest, "folder": str(folder)}), encoding="utf-8")
    os.replace(tmp, entry)
    return digest, False


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def export_space_needed(base: Path) -> int:
    """Bytes ``swift export`` writes merging an adapter into ``base``: its weights again (the merge keeps their
    dtype), plus a tenth and 512 MiB for the tokenizer, configs and shard rounding."""
    weights = sum(p.stat().st_size for p in base.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    return int(weights * 1.1) + (512 << 20)


def disk_verdict(folder: Path, needed: int) -> str | None:
    """``None`` when ``folder``'s disk has ``needed`` bytes free, else what is missing, in words."""
    free = shutil.disk_usage(folder).free
    if free >= needed:
        return None
    return (
        f"{folder} has {free / 2**30:.1f} GiB free but the merged model needs about {needed / 2**30:.1f} GiB: "
        "free space there, or point MH_ARTIFACTS_DIR at a larger disk"
    )

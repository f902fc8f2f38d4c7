"""Where a dataset comes from: the shipped sample, a local file or folder, or a ModelScope / Hugging Face dataset.

Source strings: ``""`` (the sample), a path, ``modelscope:OWNER/NAME[@REVISION]`` (``modelscope`` alone means the
runbook's ``CodyWhy/mh-sharegpt-20250820``), ``hf:OWNER/NAME[@REVISION]``. Hub datasets are fetched with the real
SDKs into the project's cache; when the hub cannot be reached a cached copy is used, and without one the call fails
within seconds, saying to pass a local path. Plain module (SDKs are imported on use).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from mh_assets.models import hub_endpoint, reachable
from mh_assets.sharegpt import source_files
from mh_assets.snapshot import SAMPLE_DATASET
from mh_assets.store import default_store

DEFAULT_MODELSCOPE_DATASET = "CodyWhy/mh-sharegpt-20250820"
HUB_PREFIXES = {"modelscope": "modelscope", "ms": "modelscope", "hf": "huggingface", "huggingface": "huggingface"}


class SourceError(RuntimeError):
    """A source that cannot be read; the message says what to do."""


@dataclass(frozen=True)
class Source:
    kind: str  # sample | path | modelscope | huggingface
    location: str  # path, or hub dataset id
    revision: str | None = None

    @property
    def label(self) -> str:
        if self.kind in ("sample", "path"):
            return self.location
        return f"{self.kind}:{self.location}" + (f"@{self.revision}" if self.revision else "")


def parse_source(text: str) -> Source:
    text = text.strip()
    if not text:
        return Source("sample", str(SAMPLE_DATASET))
    prefix, sep, rest = text.partition(":")
    if prefix.lower() in HUB_PREFIXES and (sep or prefix.lower() == "modelscope") and not Path(text).exists():
        hub = HUB_PREFIXES[prefix.lower()]
        dataset_id, _, revision = rest.partition("@")
        if not dataset_id:
            if hub != "modelscope":
                raise SourceError(f"{text!r}: name the Hugging Face dataset, e.g. hf:owner/name")
            dataset_id = DEFAULT_MODELSCOPE_DATASET
        return Source(hub, dataset_id, revision or None)
    return Source("path", str(Path(text).expanduser().resolve()))


def hub_cache(hub: str, root: Path) -> Path:
    """The project's cache for a hub's datasets (``MODELSCOPE_CACHE`` / ``HF_HOME`` when set)."""
    if hub == "modelscope":
        return Path(os.environ.get("MODELSCOPE_CACHE", root / ".cache" / "modelscope"))
    return Path(os.environ.get("HF_HOME", root / ".cache" / "huggingface")) / "hub"


def _download(source: Source, offline: bool, root: Path) -> Path:
    cache = hub_cache(source.kind, root)
    if source.kind == "modelscope":
        # the SDK writes a session file under MODELSCOPE_HOME (default ~/.modelscope) even when offline
        os.environ.setdefault("MODELSCOPE_HOME", str(root / ".cache" / "modelscope-home"))
        from modelscope.hub.snapshot_download import snapshot_download

        return Path(
            snapshot_download(
                repo_id=source.location,
                repo_type="dataset",
                revision=source.revision,
                cache_dir=str(cache),
                local_files_only=offline,
            )
        )
    from huggingface_hub import snapshot_download as hf_snapshot_download

    return Path(
        hf_snapshot_download(
            repo_id=source.location,
            repo_type="dataset",
            revision=source.revision,
            cache_dir=str(cache),
            local_files_only=offline,
            token=os.environ.get("HF_TOKEN"),
        )
    )


def resolve(source: Source, root: Path | None = None) -> tuple[Path, str | None, list[str]]:
    """``(local folder or file, revision, notes)``; hub datasets are downloaded into the cache under ``root`` (the
    artifact store's local root; default ``default_store().root``), or taken from it offline."""
    root = root or default_store().root
    if source.kind in ("sample", "path"):
        path = Path(source.location)
        if not path.exists():
            raise SourceError(f"dataset source {path} does not exist")
        return path, None, []
    endpoint = hub_endpoint(source.kind)
    online = reachable(endpoint)
    notes = [] if online else [f"{endpoint} is not reachable: using the cached copy in {hub_cache(source.kind, root)}"]
    try:
        folder = _download(source, offline=not online, root=root)
    except Exception as exc:  # the SDKs raise their own error types for a cache miss
        if online:
            raise SourceError(f"downloading {source.label} failed: {exc}") from exc
        raise SourceError(
            f"{source.label} cannot be fetched: {endpoint} is not reachable from this machine and "
            f"{hub_cache(source.kind, root)} holds no copy. Pass a local .jsonl/.json file or folder as the source."
        ) from exc
    return folder, _revision(folder, source), notes


def _revision(folder: Path, source: Source) -> str | None:
    """Hugging Face caches by commit hash, ModelScope by revision name: the snapshot folder's name says which."""
    return folder.name if folder.parent.name == "snapshots" else source.revision


def content_hash(path: Path) -> str:
    """A content hash of a source's data files (names and bytes), streamed."""
    digest = hashlib.sha256()
    files = source_files(path)
    for f in files:
        digest.update((f.relative_to(path).as_posix() if path.is_dir() else f.name).encode() + b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()

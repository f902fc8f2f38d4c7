"""The artifact store: ``<root>/<asset>/<version>/`` folders finalized atomically, plus ``latest``.

A step builds into a staging folder beside the final one and renames it into place only when complete
(``finalize``), so a failed step never leaves a half-written model that a later step could pick up. Plain module;
the Dagster resource over it is ``mh_assets.defs.resources.ArtifactStore``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def default_root() -> Path:
    """``$MH_ARTIFACTS_DIR``, else ``./artifacts``: the root plain code and the ``artifacts`` resource default to."""
    return Path(os.environ.get("MH_ARTIFACTS_DIR", "artifacts")).resolve()


class MissingUpstream(RuntimeError):
    """An upstream artifact that a step reads by path does not exist yet."""


@dataclass(frozen=True)
class Store:
    """The versions of every asset under one root folder."""

    root: Path

    def folder(self, name: str) -> Path:
        return self.root / name

    def latest(self, name: str) -> Path | None:
        """The newest committed version of an asset, or ``None`` if it was never materialized."""
        link = self.folder(name) / "latest"
        return link.resolve() if link.is_symlink() and link.resolve().is_dir() else None

    def require(self, name: str, hint: str = "") -> Path:
        found = self.latest(name)
        if found is None:
            raise MissingUpstream(
                f"{name} has not been materialized: nothing at {self.folder(name) / 'latest'}. "
                f"Materialize {name} first{': ' + hint if hint else '.'}"
            )
        return found

    @contextmanager
    def staging(self, name: str) -> Iterator[Path]:
        """An empty folder to build a new version in; removed if the block fails or does not finalize it."""
        parent = self.folder(name)
        parent.mkdir(parents=True, exist_ok=True)
        tmp = parent / f".staging-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            yield tmp
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def _point_latest(parent: Path, target: Path) -> None:
    tmp_link = parent / f".latest-{uuid.uuid4().hex}"
    tmp_link.symlink_to(target.name)
    os.replace(tmp_link, parent / "latest")


def finalize(staged: Path, version: str) -> Path:
    """Rename a staged folder to ``<asset>/<version>`` and point ``latest`` at it.

    Versions are immutable: if the version already exists (same content), the staged copy is discarded.
    """
    final = staged.parent / version
    if final.exists():
        shutil.rmtree(staged)
    else:
        os.replace(staged, final)
    _point_latest(final.parent, final)
    return final


def hash_tree(root: Path, exclude: tuple[str, ...] = ()) -> str:
    """A content hash of a folder: relative paths and bytes of every file, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(exclude):
            continue
        digest.update(rel.encode() + b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def tree_size(root: Path) -> tuple[int, int]:
    """``(file_count, total_bytes)`` of a folder."""
    files = [p for p in root.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)

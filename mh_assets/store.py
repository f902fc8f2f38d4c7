"""The artifact store: ``<root>/<asset>/<version>/`` folders finalized atomically, plus ``latest``.

A step builds into a staging folder beside the final one and renames it into place only when complete
(``Store.finalize``), so a failed step never leaves a half-written model that a later step could pick up. Locally,
``latest`` is a symlink to the newest version.

The store may also live on an object store (``MH_ARTIFACTS_DIR=s3://bucket/prefix``, any fsspec URL; S3-compatible
stores through ``AWS_ENDPOINT_URL``). Steps still build and read on local disk, in the store's local copy
(``MH_ARTIFACTS_CACHE``): a finalized version is uploaded to ``<url>/<asset>/<version>/``, its manifest last (a
version without one is incomplete and never read), and only then is the pointer object ``<url>/<asset>/LATEST``
rewritten to name it. Reading ``latest`` follows the pointer and downloads the version into the local copy once.
Object stores cannot rename, so the version's own key is the temporary one: nothing names it until the pointer does.
Plain module; the Dagster resource over it is ``mh_assets.defs.resources.ArtifactStore``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POINTER = "LATEST"
"""The object that names an asset's newest version on an object store (its text is the version's folder name)."""
MANIFEST = ".mh-published.json"
"""Written last into a version on an object store: its files and sizes. A version without it is incomplete."""


def is_url(location: str) -> bool:
    return "://" in location


def open_store(location: str, cache: str = "") -> Store:
    """A store at a folder or an fsspec URL; a URL's local copy is ``cache``, else under ``~/.cache/mh-assets``."""
    if not is_url(location):
        return Store(Path(location).resolve())
    local = Path(cache) if cache else Path.home() / ".cache" / "mh-assets" / re.sub(r"[^\w.-]+", "_", location)
    return Store(local.resolve(), remote=location.rstrip("/"))


def default_store() -> Store:
    """``$MH_ARTIFACTS_DIR`` (a folder or a URL), else ``./artifacts``: the store plain code and the ``artifacts``
    resource default to; a URL's local copy is ``$MH_ARTIFACTS_CACHE`` when set."""
    return open_store(os.environ.get("MH_ARTIFACTS_DIR", "artifacts"), os.environ.get("MH_ARTIFACTS_CACHE", ""))


class MissingUpstream(RuntimeError):
    """An upstream artifact that a step reads by path does not exist yet."""


@dataclass(frozen=True)
class Store:
    """The versions of every asset under one root folder, mirrored to ``remote`` (a URL) when given."""

    root: Path
    remote: str | None = None

    def folder(self, name: str) -> Path:
        return self.root / name

    def location(self, name: str, version: str | None = None) -> str:
        """Where an asset (or one of its versions) is kept: the URL on an object store, else the local folder."""
        base = f"{self.remote}/{name}" if self.remote else str(self.folder(name))
        return f"{base}/{version}" if version else base

    def latest_version(self, name: str) -> str | None:
        """The name of an asset's newest committed version, without fetching it; ``None`` if never materialized."""
        if self.remote is None:
            link = self.folder(name) / "latest"
            return link.resolve().name if link.is_symlink() and link.resolve().is_dir() else None
        return _read_text(_remote(self.location(name)) / POINTER)

    def latest(self, name: str, only: Iterable[str] | None = None) -> Path | None:
        """The newest committed version of an asset (local; fetched from the object store when needed), or
        ``None`` if it was never materialized. ``only``: the file patterns a reader needs, fetching no more."""
        version = self.latest_version(name)
        return None if version is None else self.version(name, version, only)

    def version(self, name: str, version: str, only: Iterable[str] | None = None) -> Path | None:
        """One committed version of an asset, local or fetched (``only`` as for ``latest``); ``None`` if it is
        neither in the local copy nor published."""
        final = self.folder(name) / version
        if final.is_dir():
            return final
        if self.remote is None:
            return None
        source = _remote(self.location(name, version))
        if _read_manifest(source) is None:
            return None
        if only is None:
            return fetch(source, final)
        only = sorted(only)
        partial = self.folder(name) / ".partial" / f"{version}-{hashlib.sha256(repr(only).encode()).hexdigest()[:8]}"
        return fetch(source, partial, only)

    def published(self, name: str, version: str) -> bool:
        """Whether a version is committed where every machine sees it (on an object store: its manifest is there)."""
        if self.remote is None:
            return (self.folder(name) / version).is_dir()
        return _read_manifest(_remote(self.location(name, version))) is not None

    def require(self, name: str, hint: str = "") -> Path:
        found = self.latest(name)
        if found is None:
            where = f"{self.location(name)}/{POINTER if self.remote else 'latest'}"
            raise MissingUpstream(
                f"{name} has not been materialized: nothing at {where}. "
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

    def finalize(self, staged: Path, version: str) -> Path:
        """Rename a staged folder to ``<asset>/<version>``, upload it when the store is remote, then point
        ``latest`` at it.

        Versions are immutable: if the version already exists (same content), the staged copy is discarded.
        """
        final = staged.parent / version
        if final.exists():
            shutil.rmtree(staged)
        else:
            try:
                os.replace(staged, final)
            except OSError:
                if not final.is_dir():  # else another process finalized the same version first
                    raise
                shutil.rmtree(staged)
        if self.remote is not None:
            target = _remote(self.location(final.parent.relative_to(self.root).as_posix(), version))
            publish(final, target)
            (target.parent / POINTER).write_text(version, encoding="utf-8")
        _point_latest(final.parent, final)
        return final


def _point_latest(parent: Path, target: Path) -> None:
    tmp_link = parent / f".latest-{uuid.uuid4().hex}"
    tmp_link.symlink_to(target.name)
    os.replace(tmp_link, parent / "latest")


def _remote(url: str) -> Any:
    from upath import UPath

    return UPath(url)


def _contents(folder: Path) -> tuple[dict[str, int], dict[str, str]]:
    """A version folder's files (relative path: size) and symlinks (relative path: target), links not followed."""
    files: dict[str, int] = {}
    links: dict[str, str] = {}
    for top, dirs, names in os.walk(folder):
        for name in [*names, *dirs]:
            path = Path(top) / name
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                links[rel] = os.readlink(path)
            elif name in names:
                files[rel] = path.stat().st_size
    return dict(sorted(files.items())), dict(sorted(links.items()))


def _read_text(path: Any) -> str | None:
    """An object's text, or None if there is none. Never from a cached listing (s3fs keeps them): another machine
    may have just published it, or rewritten it."""
    path.fs.invalidate_cache(path.path)
    try:
        return path.fs.cat_file(path.path).decode("utf-8").strip()
    except FileNotFoundError:
        return None


def _read_manifest(version: Any) -> dict[str, Any] | None:
    text = _read_text(version / MANIFEST)
    return None if text is None else json.loads(text)


def publish(local: Path, target: Any) -> None:
    """Upload a finalized version folder to ``target`` (a UPath), its manifest last. A version already published
    (its manifest is there) is left as it is: versions are immutable."""
    if _read_manifest(target) is not None:
        return
    files, links = _contents(local)
    for rel in files:
        target.fs.put_file(str(local / rel), (target / rel).path)
    manifest = {"files": files, "links": links}
    (target / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")


def fetch(source: Any, dest: Path, only: Iterable[str] | None = None) -> Path:
    """Download a published version (``source``, a UPath) into ``dest`` atomically, unless it is there already;
    ``only``: the file patterns to fetch. Sizes are checked against the version's manifest."""
    if dest.is_dir():
        return dest
    manifest = _read_manifest(source)
    if manifest is None:
        raise MissingUpstream(f"{source} has no {MANIFEST}: its upload never finished, so it cannot be read")
    wanted = list(only) if only is not None else None

    def keep(rel: str) -> bool:
        return wanted is None or any(fnmatch.fnmatch(rel, pattern) for pattern in wanted)

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".fetching-{uuid.uuid4().hex}"
    try:
        for rel, size in manifest["files"].items():
            if keep(rel):
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                source.fs.get_file((source / rel).path, str(tmp / rel))
                if (got := (tmp / rel).stat().st_size) != size:
                    raise OSError(f"{source / rel}: fetched {got} bytes, its manifest says {size}")
        for rel, link in manifest["links"].items():
            if keep(rel):
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                (tmp / rel).symlink_to(link)
        tmp.mkdir(exist_ok=True)
        try:
            os.replace(tmp, dest)
        except OSError:
            if not dest.is_dir():  # else another process fetched it first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


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

"""Upload a merged model folder: to a local versioned registry, to ModelScope, or to Hugging Face.

Each target is idempotent per model version (the merged model's data version): a version already on the target
makes no new commit and says so. Uploads retry transient failures with exponential backoff, then fail with the
hub's own message; tokens are passed to the SDKs and never returned, logged or written. Plain module (the hub SDKs
are imported on use).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from mh_assets.store import Store, tree_size

PROVENANCE = "mh_assets.json"
NOT_RETRYABLE = {400, 401, 403, 404, 409, 422}
T = TypeVar("T")


@dataclass(frozen=True)
class Uploaded:
    target: str
    repo_id: str
    url: str
    revision: str
    files: int
    bytes: int
    new_commit: bool
    message: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class UploadError(RuntimeError):
    """The hub refused or kept failing; the message is the hub's, with any token scrubbed."""


def commit_title(version: str) -> str:
    return f"mh-assets model version {version}"


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None) or getattr(exc, "status_code", None)


def with_retries(
    call: Callable[[], T], secret: str | None, attempts: int = 4, first_delay_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:  # fmt: skip
    """``call()``, retried with exponential backoff on transient errors (5xx, connection); a client error or the
    last failure raises ``UploadError`` with the hub's message."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:  # the SDKs raise many types; the status code decides
            status = _status(exc)
            if attempt == attempts or status in NOT_RETRYABLE:
                message = str(exc).replace(secret, "***") if secret else str(exc)
                raise UploadError(f"after {attempt} attempt(s): {type(exc).__name__}: {message}") from None
            sleep(first_delay_s * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def upload_local(store: Store, folder: Path, repo_id: str, version: str, registry: str) -> Uploaded:
    """Copy into ``<registry>/<repo_id>/<version>`` of the store, atomically."""
    name = f"{registry}/{repo_id}"
    existing = store.published(name, version)
    with store.staging(name) as tmp:
        if not (tmp.parent / version).exists():
            shutil.copytree(folder, tmp, dirs_exist_ok=True, copy_function=os.link)  # same disk: no copy of weights
        final = store.finalize(tmp, version)  # also publishes a version only this machine's copy holds
    files, size = tree_size(final)
    return Uploaded(
        target="local",
        repo_id=repo_id,
        url=store.location(name, version) if store.remote else final.as_uri(),
        revision=version,
        files=files,
        bytes=size,
        new_commit=not existing,
        message=f"version {version} is already in the registry" if existing else f"copied to {final}",
    )


def upload_huggingface(
    folder: Path, repo_id: str, version: str, token: str | None, endpoint: str | None = None, private: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> Uploaded:  # fmt: skip
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    repo = with_retries(lambda: api.create_repo(repo_id, private=private, exist_ok=True), token, sleep=sleep)
    url = str(repo)
    files, size = tree_size(folder)
    title = commit_title(version)
    # the newest commit carries the version's title only when the repo holds exactly that version (files, then
    # provenance, in that order; anything committed later, another version included, comes after it)
    commits = with_retries(lambda: api.list_repo_commits(repo_id), token, sleep=sleep)
    earlier = commits[0] if commits and commits[0].title == title else None
    if earlier is not None:
        return Uploaded(
            "huggingface",
            repo_id,
            url,
            earlier.commit_id,
            files,
            size,
            False,
            f"version {version} is already on {repo_id} (commit {earlier.commit_id[:12]}): no new commit",
        )
    # huggingface_hub 1.x: upload_folder is the large-folder upload (upload_large_folder is deprecated): with hf_xet
    # it commits a large folder in parts and, run again after an interruption, skips what is already there. The
    # provenance file goes last, in the commit titled with the version: that title means the whole version is there.
    with_retries(
        lambda: api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), commit_message=f"{title}: files", ignore_patterns=[PROVENANCE]
        ),
        token,
        sleep=sleep,
    )
    info = with_retries(
        lambda: api.upload_file(
            path_or_fileobj=str(folder / PROVENANCE), path_in_repo=PROVENANCE, repo_id=repo_id, commit_message=title
        ),
        token,
        sleep=sleep,
    )
    return Uploaded("huggingface", repo_id, url, info.oid, files, size, True, f"committed {info.oid[:12]}")


def upload_modelscope(
    folder: Path, repo_id: str, version: str, token: str | None, endpoint: str | None = None, private: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> Uploaded:  # fmt: skip
    """ModelScope keeps no commit titles a client can list; the provenance file in the repo carries the version."""
    from modelscope_hub.api import HubApi

    api = HubApi(endpoint=endpoint, token=token)
    base = (endpoint or "https://www.modelscope.cn").rstrip("/")
    url = f"{base}/models/{repo_id}"
    files, size = tree_size(folder)
    if with_retries(lambda: api.repo_exists(repo_id, "model"), token, sleep=sleep):
        remote = with_retries(lambda: api.list_repo_files(repo_id, "model"), token, sleep=sleep)
        if PROVENANCE in {getattr(f, "path", f) for f in remote}:
            path = with_retries(lambda: api.download_file(repo_id, "model", PROVENANCE, force=True), token, sleep=sleep)
            if json.loads(Path(path).read_text(encoding="utf-8")).get("version") == version:
                return Uploaded(
                    "modelscope",
                    repo_id,
                    url,
                    version,
                    files,
                    size,
                    False,
                    f"version {version} is already on {repo_id}: no new commit",
                )
    else:
        visibility = "private" if private else "public"
        with_retries(lambda: api.create_repo(repo_id, "model", visibility=visibility), token, sleep=sleep)
    result = with_retries(
        lambda: api.upload_folder(repo_id, "model", folder, commit_message=commit_title(version)), token, sleep=sleep
    )
    revision = str((result or {}).get("commit_id", version)) if isinstance(result, dict) else version
    return Uploaded("modelscope", repo_id, url, revision, files, size, True, f"uploaded to {repo_id}")

"""Publishing helpers: retries, secret scrubbing, the local registry, and ModelScope at the SDK boundary."""

import json
from pathlib import Path

import pytest

from mh_assets.hub import (
    PROVENANCE,
    UploadError,
    commit_title,
    upload_huggingface,
    upload_local,
    upload_modelscope,
    with_retries,
)
from mh_assets.procs import SECRET_ENV, inherited_env
from mh_assets.store import Store


class HubHTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.response = type("Response", (), {"status_code": status})()


def test_transient_errors_are_retried_with_backoff():
    calls, sleeps = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise HubHTTPError(503, "Service Unavailable")
        return "ok"

    assert with_retries(flaky, secret=None, sleep=sleeps.append) == "ok"
    assert sleeps == [2.0, 4.0]


def test_client_errors_fail_at_once_with_the_hubs_message_and_no_secret():
    sleeps = []

    def refused():
        raise HubHTTPError(401, "Invalid token hf_secret123 for this repo")

    with pytest.raises(UploadError, match=r"after 1 attempt\(s\): HubHTTPError: Invalid token \*\*\* for") as err:
        with_retries(refused, secret="hf_secret123", sleep=sleeps.append)
    assert "hf_secret123" not in str(err.value) and sleeps == []


def test_retries_give_up_after_the_last_attempt():
    sleeps = []

    def unreachable():
        raise ConnectionError("connection reset")

    with pytest.raises(UploadError, match="after 4 attempt"):
        with_retries(unreachable, secret=None, sleep=sleeps.append)
    assert sleeps == [2.0, 4.0, 8.0]


def _model(folder: Path) -> Path:
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / PROVENANCE).write_text(json.dumps({"version": "v1"}))
    return folder


def test_local_registry_is_idempotent(tmp_path: Path, artifacts: Path):
    model = _model(tmp_path / "model")
    first = upload_local(Store(artifacts), model, "team/m", "v1", "registry")
    again = upload_local(Store(artifacts), model, "team/m", "v1", "registry")
    assert first.new_commit and not again.new_commit and "already in the registry" in again.message
    assert (artifacts / "registry" / "team" / "m" / "v1" / "model.safetensors").read_bytes() == b"weights"


class FakeModelScope:
    """Stands in for modelscope_hub.api.HubApi: its HTTP API cannot be redirected to a loopback server here."""

    repos: dict[str, dict[str, bytes]] = {}
    calls: list[tuple] = []

    def __init__(self, config=None, *, endpoint=None, token=None, user_agent=None) -> None:
        self.calls.append(("init", endpoint, token is not None))

    def repo_exists(self, repo_id, repo_type):
        return repo_id in self.repos

    def create_repo(self, repo_id, repo_type, *, visibility=None, **extra):
        self.calls.append(("create_repo", repo_id, repo_type, visibility))
        self.repos[repo_id] = {}

    def list_repo_files(self, repo_id, repo_type, **kw):
        return [type("FileInfo", (), {"path": p})() for p in self.repos[repo_id]]

    def download_file(self, repo_id, repo_type, file_path, **kw):
        path = Path(kw.get("cache_dir") or "/tmp") / f"ms-{abs(hash(repo_id))}-{file_path}"
        path.write_bytes(self.repos[repo_id][file_path])
        return path

    def upload_folder(self, repo_id, repo_type, folder_path, *, commit_message=None, **kw):
        self.calls.append(("upload_folder", repo_id, commit_message))
        self.repos[repo_id] = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        return {"commit_id": "abc123"}


def test_modelscope_upload_at_the_sdk_boundary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import modelscope_hub.api

    FakeModelScope.repos, FakeModelScope.calls = {}, []
    monkeypatch.setattr(modelscope_hub.api, "HubApi", FakeModelScope)
    model = _model(tmp_path / "model")
    first = upload_modelscope(model, "team/m", "v1", token="ms-token")
    assert first.new_commit and first.revision == "abc123" and first.url.endswith("/models/team/m")
    assert ("create_repo", "team/m", "model", "private") in FakeModelScope.calls
    assert ("upload_folder", "team/m", commit_title("v1")) in FakeModelScope.calls
    again = upload_modelscope(model, "team/m", "v1", token="ms-token")
    assert not again.new_commit and "no new commit" in again.message
    assert sum(1 for c in FakeModelScope.calls if c[0] == "upload_folder") == 1


def test_children_inherit_no_secret(monkeypatch: pytest.MonkeyPatch):
    for name in SECRET_ENV:
        monkeypatch.setenv(name, "secret")
    monkeypatch.setenv("MH_ARTIFACTS_DIR", "/x")
    env = inherited_env()
    assert not set(SECRET_ENV) & set(env) and env["MH_ARTIFACTS_DIR"] == "/x"


def test_huggingface_upload_interrupted_before_its_version_commit_is_finished_not_skipped(tmp_path: Path):
    """Through a loopback server speaking the Hub's HTTP API (the real huggingface_hub client): files committed by an
    interrupted upload do not count as the version; running again adds the version commit and nothing else."""
    from huggingface_hub import HfApi

    from mh_assets_tests.hf_hub_stub import hf_hub_stub

    folder = _model(tmp_path / "merged")
    (folder / "config.json").write_text('{"model_type": "qwen2"}', encoding="utf-8")
    (folder / PROVENANCE).write_text('{"version": "v9"}', encoding="utf-8")
    with hf_hub_stub(token="hf_test") as hub:
        api = HfApi(endpoint=hub.endpoint, token="hf_test")
        api.create_repo("team/m", private=True)
        # what an upload killed after its first part leaves behind: some files, under the version's files title
        api.upload_file(
            path_or_fileobj=str(folder / "config.json"), path_in_repo="config.json", repo_id="team/m",
            commit_message=f"{commit_title('v9')}: files",
        )  # fmt: skip
        result = upload_huggingface(folder, "team/m", "v9", "hf_test", hub.endpoint)
        titles = [c["title"] for c in hub.repos["team/m"]["commits"]]
        assert result.new_commit and titles[-1] == commit_title("v9") and len(titles) == 3
        assert set(hub.files("team/m")) == {p.name for p in folder.iterdir()}
        assert hub.files("team/m")["model.safetensors"] == (folder / "model.safetensors").read_bytes()
        again = upload_huggingface(folder, "team/m", "v9", "hf_test", hub.endpoint)
        assert not again.new_commit and len(hub.repos["team/m"]["commits"]) == len(titles)


def test_huggingface_version_published_again_after_another_is_committed_again(tmp_path: Path):
    """Through a loopback server speaking the Hub's HTTP API: v1, v2, then v1 again leaves the repo at v1."""
    from mh_assets_tests.hf_hub_stub import hf_hub_stub

    folders = {}
    for version in ("v1", "v2"):
        folders[version] = _model(tmp_path / version)
        (folders[version] / "model.safetensors").write_bytes(f"weights of {version}".encode())
        (folders[version] / PROVENANCE).write_text(json.dumps({"version": version}), encoding="utf-8")
    with hf_hub_stub(token="hf_test") as hub:
        results = [upload_huggingface(folders[v], "team/m", v, "hf_test", hub.endpoint) for v in ("v1", "v2", "v1")]
        assert [r.new_commit for r in results] == [True, True, True]
        assert hub.files("team/m")["model.safetensors"] == b"weights of v1"
        assert hub.repos["team/m"]["commits"][-1]["title"] == commit_title("v1")

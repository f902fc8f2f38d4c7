"""The artifact store on moto's real S3 server (``moto_server`` on 127.0.0.1, s3fs through universal-pathlib):
versions published from one machine's local copy are read from another's, a killed upload is never pointed at,
and the tiny lane's snapshot, training, merge and evaluation run through it."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from upath import UPath

from mh_assets.hub import upload_local
from mh_assets.store import MANIFEST, POINTER, MissingUpstream, hash_tree, open_store
from mh_assets_tests.conftest import REPO, cli_env, fresh_dagster_home, moto_s3

URL = "s3://mh-artifacts/team"
DAGSTER = Path(sys.executable).parent / "dagster"


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    with moto_s3() as env:
        yield env


@pytest.fixture
def s3(s3_env, monkeypatch, tmp_path) -> str:
    """A prefix of its own in the bucket, the client's environment set."""
    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)
    return f"{URL}/{tmp_path.name}"


def _version(store, name: str, files: dict[str, str], version: str) -> Path:
    with store.staging(name) as tmp:
        for rel, text in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(text, encoding="utf-8")
        (tmp / "last-checkpoint").symlink_to("checkpoint-2")
        return store.finalize(tmp, version)


FILES = {"checkpoint-2/adapter_model.safetensors": "权重" * 1000, "checkpoint-2/args.json": "{}", "summary.json": "{}"}


def test_a_version_published_on_one_machine_is_read_on_another(s3, tmp_path):
    here = open_store(s3, str(tmp_path / "machine-a"))
    assert here.latest("lora_adapter_tiny") is None
    published = _version(here, "lora_adapter_tiny", FILES, "v1")
    assert published == tmp_path / "machine-a" / "lora_adapter_tiny" / "v1"

    remote = UPath(f"{s3}/lora_adapter_tiny")
    assert (remote / POINTER).read_text() == "v1"
    manifest = json.loads((remote / "v1" / MANIFEST).read_text())
    assert manifest["links"] == {"last-checkpoint": "checkpoint-2"}
    assert set(manifest["files"]) == set(FILES)

    there = open_store(s3, str(tmp_path / "machine-b"))
    assert there.latest_version("lora_adapter_tiny") == "v1"
    fetched = there.latest("lora_adapter_tiny")
    assert fetched == tmp_path / "machine-b" / "lora_adapter_tiny" / "v1"
    assert hash_tree(fetched) == hash_tree(published)
    assert (fetched / "last-checkpoint").is_symlink() and (fetched / "last-checkpoint" / "args.json").is_file()
    assert there.location("lora_adapter_tiny", "v1") == f"{s3}/lora_adapter_tiny/v1"

    _version(there, "lora_adapter_tiny", {**FILES, "summary.json": '{"v": 2}'}, "v2")  # the other way round
    assert here.latest("lora_adapter_tiny").name == "v2"
    assert (here.latest("lora_adapter_tiny") / "summary.json").read_text() == '{"v": 2}'


def test_a_reader_fetches_only_the_files_it_asks_for(s3, tmp_path):
    _version(open_store(s3, str(tmp_path / "a")), "base_model_7b", FILES, "v1")
    partial = open_store(s3, str(tmp_path / "b")).latest("base_model_7b", only=["*.json"])
    got = sorted(p.relative_to(partial).as_posix() for p in partial.rglob("*") if p.is_file())
    assert got == ["checkpoint-2/args.json", "summary.json"]
    assert not (tmp_path / "b" / "base_model_7b" / "v1").exists()  # never taken for the whole version


def test_a_missing_upstream_names_the_pointer_object(s3, tmp_path):
    with pytest.raises(MissingUpstream, match=f"nothing at {s3}/merged_model_7b/{POINTER}"):
        open_store(s3, str(tmp_path / "a")).require("merged_model_7b")


KILLED_UPLOAD = """
    import os, signal, sys
    import s3fs
    from mh_assets.store import open_store

    put, sent = s3fs.S3FileSystem.put_file, []

    def put_then_die(self, *args, **kwargs):
        put(self, *args, **kwargs)
        sent.append(args[1])
        if len(sent) == 2:  # the process dies in the middle of the upload
            os.kill(os.getpid(), signal.SIGKILL)

    s3fs.S3FileSystem.put_file = put_then_die
    store = open_store(sys.argv[1], sys.argv[2])
    with store.staging("merged_model_tiny") as tmp:
        for i in range(5):
            (tmp / f"model-0000{i}.safetensors").write_bytes(os.urandom(1 << 16))
        store.finalize(tmp, "v2")
"""


def test_a_killed_upload_leaves_no_published_pointer(s3, tmp_path):
    _version(open_store(s3, str(tmp_path / "a")), "merged_model_tiny", FILES, "v1")
    killed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_UPLOAD), s3, str(tmp_path / "b")],
        env=os.environ, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]
    remote = UPath(f"{s3}/merged_model_tiny")
    assert len([p for p in (remote / "v2").iterdir() if p.name.endswith(".safetensors")]) == 2  # half uploaded
    assert not (remote / "v2" / MANIFEST).exists()
    assert (remote / POINTER).read_text() == "v1"

    reader = open_store(s3, str(tmp_path / "c"))
    assert hash_tree(reader.latest("merged_model_tiny")) == hash_tree(tmp_path / "a" / "merged_model_tiny" / "v1")
    with pytest.raises(MissingUpstream, match="upload never finished"):
        from mh_assets.store import fetch

        fetch(remote / "v2", tmp_path / "c" / "v2")

    # the step retried on the same machine: the version is complete on its disk, so finalizing it again uploads it
    # whole and only then moves the pointer
    again = open_store(s3, str(tmp_path / "b"))
    with again.staging("merged_model_tiny") as tmp:
        (tmp / "model-00000.safetensors").write_bytes(b"a rebuild of the same version is discarded")
        local = again.finalize(tmp, "v2")
    assert (remote / POINTER).read_text() == "v2"
    assert json.loads((remote / "v2" / MANIFEST).read_text())["files"] == {
        f"model-0000{i}.safetensors": 1 << 16 for i in range(5)
    }
    assert hash_tree(open_store(s3, str(tmp_path / "d")).latest("merged_model_tiny")) == hash_tree(local)


@pytest.mark.e2e
def test_the_tiny_lane_runs_through_s3_with_a_fresh_local_copy_per_machine(s3, s3_env, tmp_path):
    """Two CLI runs stand for two machines: the first makes the snapshot, the base model and the adapter; then its
    local copy is deleted, and the second, with an empty one, merges and evaluates from what the first published."""
    home = fresh_dagster_home(tmp_path / "home")

    def materialize(keys: list[str], machine: str) -> str:
        env = {**cli_env(Path("unused"), home), **s3_env, "MH_ARTIFACTS_DIR": s3,
               "MH_ARTIFACTS_CACHE": str(tmp_path / machine)}  # fmt: skip
        proc = subprocess.run([str(DAGSTER), "asset", "materialize", "--select", ",".join(keys)],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-4000:]
        return proc.stderr

    first = ["dataset_snapshot", "base_model_tiny", "training_env_tiny", "lora_adapter_tiny"]
    log = materialize(first, "machine-a")
    assert f"published {s3}/lora_adapter_tiny/" in log  # the event log says where each version went
    shutil.rmtree(tmp_path / "machine-a")  # gone with its machine: only the bucket holds what it made
    second = ["base_scores_tiny", "merged_model_tiny", "benchmark_scores_tiny"]
    materialize(second, "machine-b")

    bucket = UPath(s3)
    for key in [*first, *second]:
        version = (bucket / key / POINTER).read_text()
        assert (bucket / key / version / MANIFEST).exists(), key
    fetched = {p.parent.name for p in (tmp_path / "machine-b").glob("*/*") if p.is_dir() and p.name[0] != "."}
    assert {"lora_adapter_tiny", "base_model_tiny", "dataset_snapshot"} <= fetched
    merged = bucket / "merged_model_tiny" / (bucket / "merged_model_tiny" / POINTER).read_text()
    lineage = json.loads((merged / "lineage.json").read_text())  # what the merge and the evaluation read
    assert lineage["base_model"] == (bucket / "base_model_tiny" / POINTER).read_text()
    assert lineage["dataset_snapshot"] == (bucket / "dataset_snapshot" / POINTER).read_text()
    scores_version = (bucket / "benchmark_scores_tiny" / POINTER).read_text()
    scores = json.loads((bucket / "benchmark_scores_tiny" / scores_version / "scores.json").read_text())
    assert scores["benchmarks"], scores
    assert not list((bucket / "lora_adapter_tiny").glob(".runs*")), "checkpoints stay on the training machine"


def test_a_registry_copy_only_this_machine_holds_is_published_not_taken_as_present(s3, tmp_path):
    """A publish killed after the local rename leaves the version in the local copy alone: the retried upload must
    publish it, not report it as already in the registry."""
    store = open_store(s3, str(tmp_path / "a"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (store.folder("registry/local/m") / "v1").mkdir(parents=True)
    (store.folder("registry/local/m") / "v1" / "config.json").write_text("{}")
    assert not store.published("registry/local/m", "v1")
    result = upload_local(store, model, "local/m", "v1", "registry")
    assert result.new_commit and store.published("registry/local/m", "v1")
    assert (UPath(f"{s3}/registry/local/m") / POINTER).read_text() == "v1"
    again = upload_local(store, model, "local/m", "v1", "registry")
    assert not again.new_commit and "already in the registry" in again.message

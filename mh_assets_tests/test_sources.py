"""Dataset sources: parsing, and hub ids that fail fast offline (the hub is unreachable by construction)."""

import time
from pathlib import Path

import pytest

from mh_assets.sharegpt import source_files
from mh_assets.sources import DEFAULT_MODELSCOPE_DATASET, Source, SourceError, content_hash, parse_source, resolve

CLOSED = "http://127.0.0.1:9"  # nothing listens on the discard port: connections are refused at once


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", CLOSED)
    monkeypatch.setenv("MODELSCOPE_HOME", str(tmp_path / "ms-home"))
    monkeypatch.setenv("HF_ENDPOINT", CLOSED)
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    return tmp_path


def test_parse_sources(tmp_path: Path):
    assert parse_source("").kind == "sample"
    assert parse_source("modelscope") == Source("modelscope", DEFAULT_MODELSCOPE_DATASET)
    assert parse_source("modelscope:a/b@v1.0") == Source("modelscope", "a/b", "v1.0")
    assert parse_source("hf:a/b") == Source("huggingface", "a/b")
    assert parse_source(str(tmp_path)) == Source("path", str(tmp_path))
    with pytest.raises(SourceError, match="name the Hugging Face dataset"):
        parse_source("hf:")


@pytest.mark.parametrize("text", ["modelscope", "hf:someone/counselling-chats"])
def test_hub_without_network_or_cache_fails_fast_and_says_what_to_do(offline, text):
    started = time.monotonic()
    with pytest.raises(SourceError, match="Pass a local .jsonl/.json file or folder"):
        resolve(parse_source(text))
    assert time.monotonic() - started < 15


def test_content_hash_sees_content(tmp_path: Path):
    (tmp_path / "a.jsonl").write_text("1\n")
    first = content_hash(tmp_path)
    (tmp_path / "a.jsonl").write_text("2\n")
    assert content_hash(tmp_path) != first
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty holds no .jsonl"):
        content_hash(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="missing.jsonl does not exist"):
        content_hash(tmp_path / "missing.jsonl")


def _conversations(folder: Path) -> Path:
    folder.mkdir(parents=True)
    line = '{"messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好，我在听。"}]}\n'
    (folder / "train.jsonl").write_text(line, encoding="utf-8")
    (folder / "dataset_infos.json").write_text("{}")  # hub metadata beside the data is not read as data
    return folder


def test_real_modelscope_sdk_reads_its_cache_offline(offline):
    repo = offline / "ms-cache" / "datasets" / "CodyWhy--mh-sharegpt-20250820"
    cached = _conversations(repo / "snapshots" / "master")
    folder, revision, notes = resolve(parse_source("modelscope"))
    assert folder == cached and revision == "master"
    assert "not reachable" in notes[0] and "cached copy" in notes[0]


def test_real_huggingface_sdk_reads_its_cache_offline(offline):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = offline / "hf-home" / "hub" / "datasets--someone--counselling-chats"
    _conversations(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)  # the SDK reads it unstripped: no newline
    folder, revision, _ = resolve(parse_source("hf:someone/counselling-chats"))
    assert folder.name == commit and revision == commit
    assert [f.name for f in source_files(folder)] == ["train.jsonl"]

"""Large models: a base model folder is hashed once and then known by its manifest; a merged model's files do not
depend on the environment it was saved in; a merge that would fill the disk is refused before it starts."""

import json
import os
from pathlib import Path

import dagster as dg

from mh_assets import defs, models
from mh_assets.lane import load_lanes
from mh_assets.models import cached_content_hash, disk_verdict, export_space_needed, strip_load_state

TINY_SEVEN_B = load_lanes()["7b"]


def _model(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "qwen2"}')
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"a" * 1000)
    (folder / "model-00002-of-00002.safetensors").write_bytes(b"b" * 500)
    (folder / ".cache").mkdir()
    (folder / ".cache" / "download.lock").write_text("hub bookkeeping")
    return folder


def test_the_content_hash_is_computed_once_then_read_from_the_cache(tmp_path, monkeypatch):
    folder, cache = _model(tmp_path / "m"), tmp_path / "cache"
    first, cached = cached_content_hash(folder, cache)
    assert not cached and len(first) == 64

    def no_reading(*args, **kwargs):
        raise AssertionError("the folder was read again although no file changed")

    monkeypatch.setattr(models, "hash_tree", no_reading)
    assert cached_content_hash(folder, cache) == (first, True)
    (folder / ".cache" / "download.lock").write_text("changed bookkeeping")  # hidden: not part of the model
    assert cached_content_hash(folder, cache) == (first, True)
    monkeypatch.undo()

    shard = folder / "model-00002-of-00002.safetensors"
    shard.write_bytes(b"c" * 500)  # same size, new content: its modification time gives it away
    os.utime(shard, ns=(shard.stat().st_atime_ns, shard.stat().st_mtime_ns + 10**9))
    second, cached = cached_content_hash(folder, cache)
    assert not cached and second != first


def test_base_model_from_a_local_folder_is_hashed_once(tmp_path, artifacts):
    folder = _model(tmp_path / "Qwen2.5-7B-Instruct")
    config = {"ops": {TINY_SEVEN_B.key("base_model"): {"config": {"local_dir": str(folder)}}}}
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        runs = [
            job.execute_in_process(
                asset_selection=[dg.AssetKey(TINY_SEVEN_B.key("base_model"))], run_config=config, instance=instance
            )
            for _ in range(2)
        ]
    metadata = [r.asset_materializations_for_node(TINY_SEVEN_B.key("base_model"))[0].metadata for r in runs]
    assert [m["content_hash_cached"].value for m in metadata] == [False, True]
    versions = [
        r.asset_materializations_for_node(TINY_SEVEN_B.key("base_model"))[0].tags["dagster/data_version"] for r in runs
    ]
    assert versions[0] == versions[1]


def test_load_time_keys_leave_the_saved_tokenizer_config(tmp_path):
    saved = {"tokenizer_class": "Qwen2Tokenizer", "local_files_only": True, "is_local": True, "eos_token": "<|im_end|>"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(saved))
    assert strip_load_state(tmp_path) == ["local_files_only", "is_local"]
    assert json.loads((tmp_path / "tokenizer_config.json").read_text()) == {
        "tokenizer_class": "Qwen2Tokenizer",
        "eos_token": "<|im_end|>",
    }
    assert strip_load_state(tmp_path) == [] and strip_load_state(tmp_path / "absent") == []


def test_a_merge_that_would_not_fit_on_the_disk_is_refused_saying_how_much(tmp_path, monkeypatch):
    base = _model(tmp_path / "base")
    needed = export_space_needed(base)
    assert needed == int(1500 * 1.1) + (512 << 20)
    assert disk_verdict(tmp_path, needed) is None

    class Usage:
        free = 300 << 20

    monkeypatch.setattr(models.shutil, "disk_usage", lambda path: Usage)
    message = disk_verdict(tmp_path, needed)
    assert message is not None and "0.3 GiB free" in message and "about 0.5 GiB" in message

"""Artifacts appear only when complete; versions are immutable; ``latest`` follows the newest."""

import pytest

from mh_assets.store import MissingUpstream, Store, hash_tree


def test_failed_build_leaves_nothing(artifacts):
    store = Store(artifacts)
    with pytest.raises(RuntimeError), store.staging("merged_model_tiny") as tmp:
        (tmp / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("merge crashed")
    assert store.latest("merged_model_tiny") is None
    assert list((artifacts / "merged_model_tiny").iterdir()) == []


def test_finalize_points_latest_and_keeps_versions(artifacts):
    store = Store(artifacts)
    with store.staging("x") as tmp:
        (tmp / "a.txt").write_text("1")
        first = store.finalize(tmp, "v1")
    with store.staging("x") as tmp:
        (tmp / "a.txt").write_text("2")
        second = store.finalize(tmp, "v2")
    assert store.latest("x") == second and (first / "a.txt").read_text() == "1"
    with store.staging("x") as tmp:
        (tmp / "a.txt").write_text("other")
        again = store.finalize(tmp, "v1")  # an existing version is never overwritten
    assert (again / "a.txt").read_text() == "1" and store.latest("x") == first


def test_require_names_what_to_materialize(artifacts):
    with pytest.raises(MissingUpstream, match="lora_adapter_7b has not been materialized.*needs a GPU"):
        Store(artifacts).require("lora_adapter_7b", "it needs a GPU")


def test_hash_tree_sees_content_and_names(tmp_path):
    (tmp_path / "a").write_text("x")
    h1 = hash_tree(tmp_path)
    (tmp_path / "a").write_text("y")
    h2 = hash_tree(tmp_path)
    assert h2 != h1
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "junk").write_text("z")
    assert hash_tree(tmp_path, exclude=(".",)) == h2 != hash_tree(tmp_path)

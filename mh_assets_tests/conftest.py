"""Shared fixtures: every test gets its own artifacts folder and Dagster home; nothing lands in the repo or ``~``."""

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mh_assets.procs import free_port, start_group, stop_group

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "artifacts"
    monkeypatch.setenv("MH_ARTIFACTS_DIR", str(root))
    return root


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny lane's base model, built once per test session (about a minute on 2 cores)."""
    from mh_assets.runners.build_tiny_model import build

    out = tmp_path_factory.mktemp("tiny-model")
    build(out)
    return out


def fresh_dagster_home(path: Path) -> Path:
    """A Dagster home holding the project's own dagster.yaml."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", path / "dagster.yaml")
    return path


def cli_env(artifacts: Path, dagster_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DAGSTER_"))}
    env.update(MH_ARTIFACTS_DIR=str(artifacts), DAGSTER_HOME=str(dagster_home), DAGSTER_MODULE_NAME="mh_assets")
    return env


@contextmanager
def moto_s3(bucket: str = "mh-artifacts") -> Iterator[dict[str, str]]:
    """moto's real S3 server on 127.0.0.1 (its own process group, always stopped), one bucket made; yields the
    environment a client needs (``AWS_ENDPOINT_URL`` and test credentials)."""
    import boto3
    import s3fs

    port = free_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "mh-test",
        "AWS_SECRET_ACCESS_KEY": "mh-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    server = start_group([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                         env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"moto_server did not listen on 127.0.0.1:{port}") from None
                time.sleep(0.2)
        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                     region_name=env["AWS_DEFAULT_REGION"]).create_bucket(Bucket=bucket)  # fmt: skip
        s3fs.S3FileSystem.clear_instance_cache()  # fsspec keeps clients per options, not per endpoint
        yield env
    finally:
        stop_group(server)
        s3fs.S3FileSystem.clear_instance_cache()

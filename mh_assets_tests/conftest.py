"""Shared fixtures: every test gets its own artifacts folder and Dagster home; nothing lands in the repo or ``~``."""

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "artifacts"
    monkeypatch.setenv("MH_ARTIFACTS_DIR", str(root))
    return root


def fresh_dagster_home(path: Path) -> Path:
    """A Dagster home holding the project's own dagster.yaml."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", path / "dagster.yaml")
    return path


def cli_env(artifacts: Path, dagster_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DAGSTER_"))}
    env.update(MH_ARTIFACTS_DIR=str(artifacts), DAGSTER_HOME=str(dagster_home), DAGSTER_MODULE_NAME="mh_assets")
    return env

"""The instance on a real PostgreSQL server (Debian's package, on 127.0.0.1 in a temporary folder): the CLI runs the
tiny lane's first assets with ``deploy/postgres/dagster.yaml`` and their runs, events and materializations are read
back, from Dagster and from the database itself."""

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from mh_assets.procs import free_port
from mh_assets_tests.conftest import REPO, cli_env

pytestmark = pytest.mark.e2e
SERVER = REPO / "deploy" / "postgres" / "local_server.py"
DAGSTER = Path(sys.executable).parent / "dagster"
KEYS = ["dataset_snapshot", "base_model_tiny"]


@pytest.fixture
def postgres() -> Iterator[dict[str, str]]:
    """A server of its own; a folder under /tmp (not pytest's, which the postgres user cannot enter when root)."""
    folder = Path(tempfile.mkdtemp(prefix="mh-pg-"))
    started = subprocess.run(
        [sys.executable, str(SERVER), "start", "--dir", str(folder), "--port", str(free_port()), "--password", "pw-1"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    env = dict(line.removeprefix("export ").split("=", 1) for line in started.stdout.split("\n") if line)
    try:
        yield env
    finally:
        subprocess.run([sys.executable, str(SERVER), "stop", "--dir", str(folder)], check=False, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def test_the_cli_runs_assets_on_postgres_and_their_history_reads_back(postgres, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "postgres" / "dagster.yaml", home / "dagster.yaml")
    proc = subprocess.run(
        [str(DAGSTER), "asset", "materialize", "--select", ",".join(KEYS)],
        cwd=REPO, env={**cli_env(tmp_path / "artifacts", home), **postgres},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not list(home.glob("**/*.db")), "an sqlite file appeared: the instance did not use Postgres"

    for key, value in postgres.items():
        monkeypatch.setenv(key, value)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        (record,) = instance.get_run_records()
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        events = {
            e.dagster_event.event_type_value for e in instance.all_logs(record.dagster_run.run_id) if e.dagster_event
        }
        kinds = ("RUN_START", "STEP_SUCCESS", "ASSET_MATERIALIZATION", "RUN_SUCCESS")
        assert {dg.DagsterEventType[kind].value for kind in kinds} <= events
        for key in KEYS:
            latest = instance.get_latest_materialization_event(dg.AssetKey(key))
            assert latest is not None and latest.run_id == record.dagster_run.run_id
            assert latest.asset_materialization.tags["dagster/data_version"]

    import psycopg2  # the rows are in the database itself

    with psycopg2.connect(
        host=postgres["DAGSTER_PG_HOST"], port=int(postgres["DAGSTER_PG_PORT"]), user=postgres["DAGSTER_PG_USERNAME"],
        password=postgres["DAGSTER_PG_PASSWORD"], dbname=postgres["DAGSTER_PG_DB"],
    ) as conn, conn.cursor() as cursor:  # fmt: skip
        cursor.execute("SELECT run_id, status FROM runs")
        assert cursor.fetchall() == [(record.dagster_run.run_id, "SUCCESS")]
        cursor.execute("SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
        assert cursor.fetchone()[0] == len(KEYS)


def test_a_wrong_password_fails_naming_the_server(postgres, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "postgres" / "dagster.yaml", home / "dagster.yaml")
    proc = subprocess.run(
        [str(DAGSTER), "asset", "materialize", "--select", "dataset_snapshot"],
        cwd=REPO, env={**cli_env(tmp_path / "artifacts", home), **postgres, "DAGSTER_PG_PASSWORD": "wrong"},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "password authentication failed" in proc.stderr
    assert not (tmp_path / "artifacts" / "dataset_snapshot").exists() or not list(
        (tmp_path / "artifacts" / "dataset_snapshot").glob("[!.]*")
    )

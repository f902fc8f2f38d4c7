"""The UI as `make ui` starts it: `dg dev` in the activated shell (webserver and daemon) on loopback, the code
location loaded, automation running."""

import json
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mh_assets.lane import STAGES, load_lanes
from mh_assets.procs import free_port, start_group, stop_group
from mh_assets_tests.conftest import REPO, cli_env, fresh_dagster_home

ACTIVATE = Path(sys.executable).parent / "activate"
QUERY = "{ assetNodes { assetKey { path } } workspaceOrError { ... on Workspace { locationEntries { name } } } }"
REPO_SELECTOR = '(repositorySelector: {repositoryName: "__repository__", repositoryLocationName: "mh_assets"})'
AUTOMATION = (
    f"{{ sensorsOrError{REPO_SELECTOR} {{ ... on Sensors {{ results {{ name sensorState {{ status ticks(limit: 1) "
    f"{{ status }} }} }} }} }} schedulesOrError{REPO_SELECTOR} {{ ... on Schedules {{ results {{ name "
    "scheduleState { status } } } } }"
)


def graphql(port: int, query: str = QUERY) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        return json.loads(response.read())["data"]


@contextmanager
def serve_ui(tmp_path: Path) -> Iterator[int]:
    """Exactly what `make ui` runs (the activate script of `make setup` sets DAGSTER_MODULE_NAME), with a fresh Dagster
    home and artifacts; yields the port once the UI answers; stops the whole process group afterwards."""
    port = free_port()
    env = cli_env(tmp_path / "artifacts", fresh_dagster_home(tmp_path / "home"))
    shell = (
        f'. "{ACTIVATE}" && export DAGSTER_HOME="{env["DAGSTER_HOME"]}" MH_ARTIFACTS_DIR="{env["MH_ARTIFACTS_DIR"]}" '
        f"&& dg dev -h 127.0.0.1 -p {port}"
    )
    server = start_group(["bash", "-c", shell], env, cwd=str(REPO))
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, "dagster dev exited"
            try:
                graphql(port)
                break
            except OSError:
                assert time.monotonic() < deadline, "the UI did not answer within 180 s"
                time.sleep(1)
        yield port
    finally:
        stop_group(server)


def test_dg_dev_in_the_activated_shell_serves_the_whole_graph(tmp_path: Path):
    with serve_ui(tmp_path) as port:
        data = graphql(port)
        deadline, ticked = time.monotonic() + 240, None
        while time.monotonic() < deadline and not ticked:  # the daemon evaluates the automation sensor by itself
            automation = graphql(port, AUTOMATION)
            sensors = automation["sensorsOrError"]["results"]
            ticked = [s["name"] for s in sensors if s["sensorState"]["ticks"]]
            time.sleep(0 if ticked else 2)
    keys = {"_".join(node["assetKey"]["path"]) for node in data["assetNodes"]}
    assert {"dataset_snapshot", "merged_model_7b", "hub_upload_32b"} <= keys
    assert {k for k in keys if k.endswith("_tiny")} == {f"{stage}_tiny" for stage in STAGES}
    assert all(f"lora_adapter_{size}" in keys for size in load_lanes())
    assert data["workspaceOrError"]["locationEntries"][0]["name"] == "mh_assets"
    assert ticked == ["automation_sensor"]
    assert all(s["sensorState"]["status"] == "RUNNING" for s in sensors)
    assert automation["schedulesOrError"]["results"] == []  # automation conditions on the assets replace them

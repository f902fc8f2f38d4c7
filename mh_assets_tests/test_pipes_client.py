"""The Pipes client on Dagster's public API: a chatty child never blocks on a full pipe, and a failing child's
message and last lines of output reach the step's failure."""

import sys
from pathlib import Path

import dagster as dg

from mh_assets.defs.resources import ProcessGroupPipesClient

CHATTY = """
import sys
from mh_assets.runners import child_pipes
with child_pipes() as pipes:
    for i in range(4000):  # about 200 KB on each stream: far more than a pipe holds
        print(f"line {i} " + "x" * 40)
        print(f"err {i} " + "y" * 40, file=sys.stderr)
    if pipes.get_extra("fail"):
        raise ValueError("the child gave up on purpose")
    pipes.report_asset_materialization(metadata={"lines": 4000})
"""


def _materialize(tmp_path: Path, fail: bool) -> dg.ExecuteInProcessResult:
    script = tmp_path / "chatty.py"
    script.write_text(CHATTY, encoding="utf-8")

    @dg.asset
    def chatty(context: dg.AssetExecutionContext, pipes: ProcessGroupPipesClient) -> dg.MaterializeResult:
        results = pipes.run(context=context, command=[sys.executable, str(script)], extras={"fail": fail})
        return results.get_materialize_result()

    client = ProcessGroupPipesClient(forward_stdio=False, termination_timeout_seconds=5)
    return dg.materialize([chatty], resources={"pipes": client}, raise_on_error=False)


def test_a_chatty_child_does_not_block_and_reports(tmp_path: Path):
    result = _materialize(tmp_path, fail=False)
    assert result.success
    assert result.asset_materializations_for_node("chatty")[0].metadata["lines"].value == 4000


def test_a_failing_child_says_why(tmp_path: Path):
    result = _materialize(tmp_path, fail=True)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data
    assert "failed with exit code 1: ValueError: the child gave up on purpose" in failure.error.message
    tail = failure.user_failure_data.metadata["output_tail"].value
    assert "err 3999" in tail or "line 3999" in tail


def test_a_step_past_its_runtime_limit_is_stopped_with_its_group(tmp_path: Path):
    """A child (and the grandchild it started) running past ``max_runtime_s`` is stopped and the step says why."""
    pid_file = tmp_path / "grandchild.pid"
    script = tmp_path / "slow.py"
    script.write_text(  # the grandchild first: importing the project takes a while on a busy machine
        "import subprocess, sys, time\n"
        "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(g.pid))\n"
        "from mh_assets.runners import child_pipes\n"
        "with child_pipes() as pipes:\n"
        "    time.sleep(600)\n",
        encoding="utf-8",
    )

    @dg.asset
    def slow(context: dg.AssetExecutionContext, pipes: ProcessGroupPipesClient) -> None:
        pipes.run(context=context, command=[sys.executable, str(script)], max_runtime_s=6)

    client = ProcessGroupPipesClient(forward_stdio=False, termination_timeout_seconds=5)
    result = dg.materialize([slow], resources={"pipes": client}, raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "ran past its limit of 0.001667 h" in failure.step_failure_data.user_failure_data.description
    grandchild = int(pid_file.read_text())
    assert not Path(f"/proc/{grandchild}").exists() or "Z" in Path(f"/proc/{grandchild}/stat").read_text().split()[2]

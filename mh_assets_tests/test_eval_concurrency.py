"""Requests in flight during evaluation: the scores asset in endpoint mode, run for real (the runner, EvalScope's
OpenAI client) against a loopback stub that answers each request after a fixed latency and counts how many it is
answering at once. And the defaults: vLLM on GPU lanes, 32 in flight against a server, 1 for a local model."""

import json
from pathlib import Path

import pytest

from mh_assets.defs.evaluation import EvalConfig, _target
from mh_assets.lane import load_lanes
from mh_assets_tests.openai_stub import Gauge, openai_stub
from mh_assets_tests.test_scoring_against_stub_server import score_tiny

LATENCY_S = 0.3  # long enough that every worker's request overlaps the others'
LIMITS = {"pceb_mcq": 24, "psyqa": 2, "safety": 2, "counselling_dialogues": 1}


@pytest.mark.parametrize("concurrency", [5, 1])  # not 8: EvalScope's own default for API models
def test_the_scores_asset_keeps_exactly_the_configured_requests_in_flight(concurrency: int, artifacts: Path):
    gauge = Gauge()
    with openai_stub(lambda _: "答案：A", latency_s=LATENCY_S, gauge=gauge) as (url, received):
        config = {"endpoint": url, "model_name": "stub-model", "limits": LIMITS, "concurrency": concurrency}
        result = score_tiny(config)  # no judge
    # the gates then fail (there are no base scores here): the materialization is what counts
    assert result.asset_materializations_for_node("benchmark_scores_tiny"), [
        e.message for e in result.all_events if e.is_failure
    ]
    assert len(received) > 24 and gauge.now == 0
    assert gauge.peak == concurrency
    scores = json.loads((artifacts / "benchmark_scores_tiny" / "latest" / "scores.json").read_text())
    assert scores["target"]["concurrency"] == concurrency


def test_a_concurrency_below_one_fails_the_step(artifacts: Path):
    result = score_tiny({"endpoint": "http://127.0.0.1:9/v1", "model_name": "m", "concurrency": 0})
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    assert "greater than or equal to 1" in str(failure.cause or failure.message)


def test_defaults_depend_on_the_lane_and_the_mode():
    lanes, model = load_lanes(), Path("/models/m")
    tiny, gpu = lanes["tiny"], lanes["7b"]
    # CPU lane: transformers; GPU lane: vLLM; a backend the lane file states, or the run asks for, wins
    assert _target(tiny, EvalConfig(mode="service"), model)["backend"] == "transformers"
    assert _target(gpu, EvalConfig(mode="service"), model)["backend"] == "vllm"
    stated = gpu.model_copy(update={"evaluation": gpu.evaluation.model_copy(update={"deploy_backend": "sglang"})})
    assert _target(stated, EvalConfig(mode="service"), model)["backend"] == "sglang"
    assert _target(gpu, EvalConfig(mode="service", backend="transformers"), model)["backend"] == "transformers"
    # 32 in flight against a server, 1 for a local model; the lane's value, then the run's, override
    assert _target(tiny, EvalConfig(mode="local"), model)["concurrency"] == 1
    assert _target(tiny, EvalConfig(mode="service"), model)["concurrency"] == 32
    assert _target(gpu, EvalConfig(endpoint="http://h/v1", model_name="m"), None)["concurrency"] == 32
    four = gpu.model_copy(update={"evaluation": gpu.evaluation.model_copy(update={"concurrency": 4})})
    assert _target(four, EvalConfig(mode="service"), model)["concurrency"] == 4
    assert _target(four, EvalConfig(mode="service", concurrency=16), model)["concurrency"] == 16


def test_a_lane_file_with_concurrency_zero_is_refused():
    from pydantic import ValidationError

    from mh_assets.lane import Evaluation

    with pytest.raises(ValidationError, match="must be at least 1"):
        Evaluation(served_model_name="m", concurrency=0)

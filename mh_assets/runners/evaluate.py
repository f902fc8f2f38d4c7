"""Child process: EvalScope on a local model folder; writes ``scores.json`` and reports the scores over Pipes.

Extras: ``model_dir``, ``work_dir`` (EvalScope's report folder goes to ``work_dir/evalscope``), ``suite``
(benchmark -> runbook-format file), ``limit``, ``max_tokens``, ``torch_dtype``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mh_assets.benchmarks import load_mcq, mcq_scores, read_review_scores, to_general_mcq


def evaluate(
    model_dir: Path, work_dir: Path, suite: dict[str, str], limit: int | None, max_tokens: int, torch_dtype: str
) -> dict[str, Any]:
    from evalscope import TaskConfig, run_task

    data_dir = work_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    rows = to_general_mcq(load_mcq(Path(suite["pceb_mcq"])))
    (data_dir / "pceb_mcq_val.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    evalscope_dir = work_dir / "evalscope"
    run_task(
        TaskConfig(
            model=str(model_dir),
            model_id=model_dir.name,
            eval_type="llm_ckpt",
            datasets=["general_mcq"],
            dataset_args={
                "general_mcq": {
                    "local_path": str(data_dir),
                    "subset_list": ["pceb_mcq"],
                    "extra_params": {"multiple_correct": True},
                }
            },
            work_dir=str(evalscope_dir),
            no_timestamp=True,
            limit=limit,
            generation_config={"max_tokens": max_tokens, "do_sample": False},
            model_args={"precision": torch_dtype},
        )
    )
    per_sample = read_review_scores(evalscope_dir / "reviews" / model_dir.name / "general_mcq_pceb_mcq.jsonl")
    scores = {"model": str(model_dir), "benchmarks": {"pceb_mcq": mcq_scores(per_sample)}}
    (work_dir / "scores.json").write_text(json.dumps(scores, ensure_ascii=False, indent=2), encoding="utf-8")
    return scores


def main() -> None:
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        scores = evaluate(
            Path(pipes.get_extra("model_dir")),
            Path(pipes.get_extra("work_dir")),
            pipes.get_extra("suite"),
            pipes.extras.get("limit"),
            pipes.get_extra("max_tokens"),
            pipes.get_extra("torch_dtype"),
        )
        metadata = {
            f"{bench}/{metric}": value
            for bench, result in scores["benchmarks"].items()
            for metric, value in result.items()
        }
        pipes.log.info(f"scores: {metadata}")
        pipes.report_asset_materialization(metadata=metadata)


if __name__ == "__main__":
    main()

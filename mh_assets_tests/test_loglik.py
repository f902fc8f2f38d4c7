"""The runbook's scheme A: lm-eval scores the exam by log-likelihood. On the tiny model its answers agree exactly
with the same choices scored by hand with transformers; the runbook's own task YAML runs as written; a server is
used only where it gives prompt log-probabilities, otherwise the exam is skipped saying why."""

import json
import math
import shutil
from pathlib import Path

import pytest

from mh_assets.benchmarks import SUITE, load_benchmark
from mh_assets.loglik import (
    TaskError,
    exam_tasks,
    logprobs_refusal,
    run_tasks,
    single_answer,
    task_name,
    task_scores,
    tasks_hash,
    user_tasks,
)
from mh_assets_tests.openai_stub import openai_stub

RUNBOOK = Path(__file__).parent / "data" / "lm_eval_runbook"
EXAM = load_benchmark("pceb_mcq", SUITE["pceb_mcq"])


def _by_hand(model_dir: Path, rows: list[dict]) -> list[tuple[str, list[float]]]:
    """Each question written out as the task's template should write it, each answer letter's summed
    log-probability after it from transformers' forward pass; the likeliest letter and the log-likelihoods."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    out = []
    for row in rows:
        letters = "ABCDEFGH"[: len(row["choices"])]
        prompt = row["question"].strip() + "\n"
        prompt += "".join(f"{letter}. {choice}\n" for letter, choice in zip(letters, row["choices"], strict=True))
        prompt += "答案："
        context = tok(prompt, add_special_tokens=False)["input_ids"]
        scores = []
        for letter in letters:
            whole = tok(prompt + " " + letter, add_special_tokens=False)["input_ids"]
            assert whole[: len(context)] == context
            with torch.no_grad():
                logprobs = model(input_ids=torch.tensor([whole])).logits[0].float().log_softmax(-1)
            scores.append(sum(float(logprobs[i - 1, whole[i]]) for i in range(len(context), len(whole))))
        out.append((letters[scores.index(max(scores))], scores))
    return out


@pytest.fixture(scope="module")
def exam_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list[dict], int]:
    tasks, left = exam_tasks({"pceb_mcq": EXAM}, tmp_path_factory.mktemp("lm_eval"))
    results = run_tasks(tasks, {"mode": "local", "model_dir": str(tiny_model), "torch_dtype": "float32"})
    single, several = single_answer(EXAM)
    assert left == {"pceb_mcq_ll": several}
    return results["pceb_mcq_ll"], single, several


def test_lm_eval_agrees_exactly_with_log_likelihoods_scored_by_hand(exam_run, tiny_model):
    result, single, _ = exam_run
    by_hand = _by_hand(tiny_model, single)
    assert [it["id"] for it in result["items"]] == [row["id"] for row in single]
    assert [it["chosen"] for it in result["items"]] == [letter for letter, _ in by_hand]
    assert [it["acc"] for it in result["items"]] == [float(letter == row["answer"]) for (letter, _), row in
                                                     zip(by_hand, single, strict=True)]  # fmt: skip
    right = sum(letter == row["answer"] for (letter, _), row in zip(by_hand, single, strict=True))
    assert result["acc"] == right / len(single)
    assert result["acc_ci95"][0] <= result["acc"] <= result["acc_ci95"][1]
    assert [it["gold"] for it in result["items"]] == [row["answer"] for row in single]


def test_only_single_answer_questions_are_scored_and_the_rest_are_counted(exam_run):
    result, single, several = exam_run
    assert several > 0 and result["n"] == len(single) == len(EXAM) - several
    assert all("," not in row["answer"] for row in single)
    # letters of equal length: length normalisation changes nothing
    assert result["acc_norm"] == result["acc"] and result["acc_norm_ci95"] == result["acc_ci95"]


def test_the_runbooks_task_yaml_runs_as_written_from_its_own_folder(tiny_model, tmp_path, monkeypatch):
    team = tmp_path / "team-tasks"
    shutil.copytree(RUNBOOK, team)
    monkeypatch.chdir(tmp_path)  # its data file and helper are found from the YAML's folder, not from here
    tasks = user_tasks([str(team / "pceb_mcq.yaml")], taken={"pceb_mcq_ll"})
    assert tasks == {"pceb_mcq": str(team / "pceb_mcq.yaml")}
    result = run_tasks(tasks, {"mode": "local", "model_dir": str(tiny_model), "torch_dtype": "float32"})["pceb_mcq"]
    rows = [json.loads(line) for line in (team / "pceb_mcq.jsonl").read_text(encoding="utf-8").splitlines()]
    single = [r for r in rows if "," not in r["answer"]]
    assert result["n"] == len(single) < len(rows)  # its own process_docs dropped the multi-answer rows
    assert [it["id"] for it in result["items"]] == [r["id"] for r in single]
    by_hand = _by_hand(tiny_model, single)
    assert [it["chosen"] for it in result["items"]] == [letter for letter, _ in by_hand]


def test_a_task_file_that_cannot_run_fails_naming_the_file(tmp_path, tiny_model):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(TaskError, match="missing.yaml"):
        task_name(missing)
    group = tmp_path / "group.yaml"
    group.write_text("group: exams\ntask: [a, b]\n", encoding="utf-8")
    with pytest.raises(TaskError, match=r"group\.yaml.*one task per file"):
        task_name(group)
    clash = tmp_path / "clash.yaml"
    clash.write_text("task: psyqa\n", encoding="utf-8")
    with pytest.raises(TaskError, match=r"clash\.yaml: task 'psyqa' is already a benchmark"):
        user_tasks([str(clash)], taken={"psyqa"})
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "task: broken\ndataset_path: json\ndataset_kwargs: {data_files: {test: nowhere.jsonl}}\ntest_split: test\n"
        "output_type: multiple_choice\ndoc_to_text: q\ndoc_to_choice: [A, B]\ndoc_to_target: 0\n",
        encoding="utf-8",
    )
    with pytest.raises(TaskError, match=r"broken\.yaml: lm-eval failed"):
        run_tasks(user_tasks([str(broken)], set()), {"mode": "local", "model_dir": str(tiny_model),
                                                     "torch_dtype": "float32"})  # fmt: skip


def test_task_scores_give_every_figure_an_interval():
    samples = [
        {"doc_id": i, "doc": {"id": f"q{i}"}, "acc": float(i % 2), "brier": 0.1 * i, "metrics": ["acc", "brier"]}
        for i in range(10)
    ]
    result = task_scores(samples, ["acc", "brier", "f1", "mcc"], {"f1,none": 0.6, "f1_stderr,none": 0.05})
    assert result["n"] == 10 and result["acc"] == 0.5
    assert result["acc_ci95"] == [0.2365, 0.7635]  # Wilson (rounded outward), for right/wrong items
    assert result["brier"] == pytest.approx(0.45)
    assert result["brier_ci95"][0] < 0.45 < result["brier_ci95"][1]  # bootstrap, for continuous items
    assert result["f1_ci95"] == pytest.approx([0.6 - 1.959964 * 0.05, 0.6 + 1.959964 * 0.05], abs=1e-4)
    assert result["not_reported"] == "no per-item values or standard error for mcc"
    assert [it["id"] for it in result["items"]] == [f"q{i}" for i in range(10)]
    nameless = task_scores([{"doc_id": 3, "doc": {"q": 1}, "acc": 1.0}], ["acc"], {})
    assert nameless["items"][0]["id"] == "3"


def test_tasks_hash_follows_the_task():
    tasks, _ = exam_tasks({"pceb_mcq": EXAM[:5]}, Path("/nonexistent-not-written"))
    assert tasks_hash(tasks) == tasks_hash(json.loads(json.dumps(tasks)))
    changed = {name: {**config, "doc_to_text": "{{question}}"} for name, config in tasks.items()}
    assert tasks_hash(changed) != tasks_hash(tasks)


def test_a_chat_only_server_is_refused_with_its_reason():
    with openai_stub(lambda messages: "好的") as (url, _):
        why = logprobs_refusal(url, "stub-model")
    assert why is not None and "/completions answered HTTP 404" in why and "no prompt log-probabilities" in why


def test_a_completions_server_without_prompt_log_probabilities_is_refused():
    def only_the_new_token(request: dict) -> dict:  # what swift deploy's transformers backend answers
        content = [{"token": "。", "logprob": -4.4}]
        return {"choices": [{"index": 0, "text": "。", "logprobs": {"content": content}}]}

    with openai_stub(lambda messages: "好的", completions=only_the_new_token) as (url, _):
        why = logprobs_refusal(url, "stub-model")
    assert why is not None and "returns no prompt log-probabilities" in why


def _tiny_completions(model_dir: Path):
    """A completions endpoint as vLLM answers lm-eval (token-id prompts, ``echo`` and ``logprobs``: every prompt
    token's log-probability, then one greedy token), computed by the tiny model itself."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()

    def answer(request: dict) -> dict:
        prompts = request["prompt"]
        prompts = [prompts] if isinstance(prompts, str) or isinstance(prompts[0], int) else prompts
        choices = []
        for index, ids in enumerate(prompts):
            if isinstance(ids, str):
                ids = [0, 1]  # the probe's text prompt: any two tokens show that prompt log-probabilities come back
            with torch.no_grad():
                logprobs = model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
            nxt = int(logprobs[-1].argmax())
            token_logprobs = [None] + [float(logprobs[i - 1, ids[i]]) for i in range(1, len(ids))]
            token_logprobs.append(float(logprobs[-1, nxt]))
            top = [None] + [{str(int(logprobs[i - 1].argmax())): float(logprobs[i - 1].max())}
                            for i in range(1, len(ids) + 1)]  # fmt: skip
            logprobs_out = {"token_logprobs": token_logprobs, "top_logprobs": top, "tokens": [str(t) for t in ids]}
            choices.append({"index": index, "text": "", "logprobs": logprobs_out, "finish_reason": "length"})
        return {"object": "text_completion", "choices": choices}

    return answer


def test_a_server_with_prompt_log_probabilities_scores_like_the_local_model(exam_run, tiny_model, tmp_path):
    result, _, _ = exam_run
    tasks, _ = exam_tasks({"pceb_mcq": EXAM}, tmp_path)
    with openai_stub(lambda messages: "好的", completions=_tiny_completions(tiny_model)) as (url, _):
        assert logprobs_refusal(url, "tiny") is None
        served = run_tasks(tasks, {"mode": "endpoint", "api_url": url, "model": "tiny",
                                   "tokenizer": str(tiny_model)})["pceb_mcq_ll"]  # fmt: skip
    assert [it["chosen"] for it in served["items"]] == [it["chosen"] for it in result["items"]]
    assert served["acc"] == result["acc"] and served["n"] == result["n"]
    assert not math.isnan(served["acc_ci95"][0])

"""The runbook's scheme A: lm-eval scores the exam by log-likelihood. On the tiny model its answers agree exactly
with the same choices scored by hand with transformers; the runbook's own task YAML runs as written; a server is
used only where it gives prompt log-probabilities, otherwise the exam is skipped saying why."""

import json
import math
import shutil
from pathlib import Path

import pytest

from mh_assets.benchmarks import SUITE, load_benchmark, settings_differences
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


def _local(model_dir: Path) -> dict:
    return {"mode": "local", "model_dir": str(model_dir), "torch_dtype": "float32"}


def _by_hand(model_dir: Path, rows: list[dict]) -> list[tuple[str, list[float]]]:
    """Each question written out as the task's template should write it, each answer letter's summed
    log-probability after it from transformers' forward pass; the likeliest letter and the log-likelihoods."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    out = []
    for row in rows:
        letters = "ABCDEFGHIJ"[: len(row["choices"])]
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
    tasks, left, empty = exam_tasks({"pceb_mcq": EXAM}, tmp_path_factory.mktemp("lm_eval"))
    assert empty == {}
    results = run_tasks(tasks, _local(tiny_model))
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
    for item, (_, scores) in zip(result["items"], by_hand, strict=True):
        assert item["loglikelihoods"] == pytest.approx(scores, abs=1e-4)


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
    tasks = user_tasks([str(team / "pceb_mcq.yaml")])
    assert tasks == {"lm_eval_pceb_mcq": str(team / "pceb_mcq.yaml")}  # apart from the suite's own pceb_mcq
    result = run_tasks(tasks, _local(tiny_model))["lm_eval_pceb_mcq"]
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
    clash.write_text("task: group\n", encoding="utf-8")
    assert user_tasks([str(tmp_path / "." / "clash.yaml"), str(clash)]) == {"lm_eval_group": str(clash)}  # one file
    twin = tmp_path / "twin.yaml"
    twin.write_text("task: group\n", encoding="utf-8")
    with pytest.raises(TaskError, match=r"twin\.yaml: task 'group' is already in another task file"):
        user_tasks([str(clash), str(twin)])
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "task: broken\ndataset_path: json\ndataset_kwargs: {data_files: {test: nowhere.jsonl}}\ntest_split: test\n"
        "output_type: multiple_choice\ndoc_to_text: q\ndoc_to_choice: [A, B]\ndoc_to_target: 0\n",
        encoding="utf-8",
    )
    with pytest.raises(TaskError, match=r"broken\.yaml: lm-eval failed"):
        run_tasks(user_tasks([str(broken)]), _local(tiny_model))
    # a mirror's task that fails is skipped with the reason instead
    skipped = run_tasks(user_tasks([str(broken)]), _local(tiny_model), optional=frozenset({"lm_eval_broken"}))
    assert skipped["lm_eval_broken"]["skipped"].startswith(f"{broken}: lm-eval failed")


def test_exams_with_no_single_answer_question_or_ten_choices(tiny_model, tmp_path):
    several = [{**row, "id": f"m{i}"} for i, row in enumerate(EXAM) if "," in row["answer"]][:3]
    ten = {
        "id": "ten",
        "question": "下列哪一项是第十个选项？",
        "choices": [f"选项{i}" for i in range(10)],
        "answer": "J",
    }
    tasks, left, empty = exam_tasks({"pceb_mcq": several, "pceb": [ten, *several]}, tmp_path)
    assert list(tasks) == ["pceb_ll"] and left == {"pceb_mcq_ll": 3, "pceb_ll": 3}
    assert empty["pceb_mcq_ll"]["skipped"].startswith("pceb_mcq has no single-answer question")
    (item,) = run_tasks(tasks, _local(tiny_model))["pceb_ll"]["items"]
    assert item["gold"] == "J" and len(item["loglikelihoods"]) == 10
    assert item["chosen"] == _by_hand(tiny_model, [ten])[0][0]


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
    # a metric lm-eval aggregates otherwise than by the mean keeps lm-eval's figure and standard error
    corpus = task_scores(samples, ["acc", "brier"], {"brier,none": 0.3, "brier_stderr,none": 0.1}, averaged={"acc"})
    assert corpus["brier"] == 0.3 and corpus["brier_ci95"] == pytest.approx([0.104, 0.496], abs=1e-3)


def test_a_task_with_two_filters_keeps_each_filters_figures_apart():
    samples = [
        {"doc_id": i, "doc": {"id": f"g{i}"}, "filter": f, "exact_match": float(f == "strict" or i < 2)}
        for i in range(4)
        for f in ("strict", "flexible")
    ]
    result = task_scores(samples, ["exact_match"], {})
    assert result["n"] == 4 and len(result["items"]) == 4
    assert result["exact_match,strict"] == 1.0 and result["exact_match,flexible"] == 0.5
    assert "exact_match" not in result


def test_tasks_hash_follows_the_task_and_its_data_not_where_they_lie(tmp_path):
    first = exam_tasks({"pceb_mcq": EXAM[:5]}, tmp_path / "one")[0]
    second = exam_tasks({"pceb_mcq": EXAM[:5]}, tmp_path / "two")[0]
    assert tasks_hash(first) == tasks_hash(second)  # two evaluations' work folders
    assert tasks_hash(exam_tasks({"pceb_mcq": EXAM[:6]}, tmp_path / "three")[0]) != tasks_hash(first)
    changed = {name: {**config, "doc_to_text": "{{question}}"} for name, config in first.items()}
    assert tasks_hash(changed) != tasks_hash(first)
    team = tmp_path / "team"
    shutil.copytree(RUNBOOK, team)
    runbook = user_tasks([str(team / "pceb_mcq.yaml")])
    seen = {tasks_hash(runbook)["lm_eval_pceb_mcq"]}
    with (team / "pceb_mcq.jsonl").open("a", encoding="utf-8") as rows:  # its data
        rows.write(json.dumps({**EXAM[0], "id": "extra"}, ensure_ascii=False) + "\n")
    seen.add(tasks_hash(runbook)["lm_eval_pceb_mcq"])
    with (team / "utils.py").open("a", encoding="utf-8") as helper:  # its !function helper
        helper.write("\n# changed\n")
    seen.add(tasks_hash(runbook)["lm_eval_pceb_mcq"])
    assert len(seen) == 3
    # a builder name is no local folder, whatever lies beside the YAML; a pattern is hashed by what it matches
    (team / "json").mkdir()
    (team / "json" / "notes.txt").write_text("not data", encoding="utf-8")
    assert tasks_hash(runbook)["lm_eval_pceb_mcq"] in seen
    pattern = {"t": {"task": "t", "dataset_path": "json", "dataset_kwargs": {"data_files": str(team / "**/*.jsonl")}}}
    digest = tasks_hash(pattern)
    (team / "more").mkdir()
    (team / "more" / "rows.jsonl").write_text("{}\n", encoding="utf-8")
    assert tasks_hash(pattern) != digest


def test_a_different_lm_eval_task_makes_only_its_own_figures_incomparable():
    settings = {"suite_sha256": "s", "lm_eval": {"pceb_mcq_ll": "a"}}
    base = {"settings": settings}
    tuned = {"settings": {**settings, "lm_eval": {"pceb_mcq_ll": "a", "team_exam": "t"}}}
    assert settings_differences(tuned, base, ["psyqa.rouge1", "pceb_mcq_ll.acc"]) == []
    assert settings_differences(tuned, base, ["team_exam.acc"]) == ["lm-eval task team_exam: base None, fine-tuned 't'"]
    changed = {"settings": {**settings, "lm_eval": {"pceb_mcq_ll": "b"}}}
    assert settings_differences(changed, base, ["pceb_mcq_ll.acc"]) == [
        "lm-eval task pceb_mcq_ll: base 'a', fine-tuned 'b'"
    ]
    assert settings_differences(changed, base, ["psyqa.rouge1"]) == []


def test_a_chat_only_server_is_refused_with_its_reason():
    with openai_stub(lambda messages: "好的") as (url, _):
        why = logprobs_refusal(url, "stub-model")
    assert why is not None and "/completions answered HTTP 404: a chat-only server" in why


def test_a_server_refusing_the_key_is_reported_with_its_own_words():
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    class Refuse(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(401)
            self.end_headers()
            self.wfile.write(b'{"error": "invalid api key"}')

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        why = logprobs_refusal(f"http://127.0.0.1:{server.server_address[1]}/v1", "m", "wrong-key")
    finally:
        server.shutdown()
        server.server_close()
    assert why is not None and "HTTP 401" in why and "invalid api key" in why and "chat-only" not in why


def test_a_completions_server_without_prompt_log_probabilities_is_refused():
    def only_the_new_token(request: dict) -> dict:  # what swift deploy's transformers backend answers
        content = [{"token": "。", "logprob": -4.4}]
        return {"choices": [{"index": 0, "text": "。", "logprobs": {"content": content}}]}

    with openai_stub(lambda messages: "好的", completions=only_the_new_token) as (url, _):
        why = logprobs_refusal(url, "stub-model")
    assert why is not None and "returns no prompt log-probabilities" in why


def test_against_a_server_each_failing_task_is_skipped_alone_and_nothing_crashes(tiny_model, tmp_path, monkeypatch):
    from mh_assets.runners.evaluate import exam_log_likelihood

    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "task: broken\ndataset_path: json\ndataset_kwargs: {data_files: {test: nowhere.jsonl}}\ntest_split: test\n"
        "output_type: multiple_choice\ndoc_to_text: q\ndoc_to_choice: [A, B]\ndoc_to_target: 0\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("MH_EVAL_API_KEY", "team-key")
    with openai_stub(lambda messages: "好的", completions=_tiny_completions(tiny_model)) as (url, _):
        target = {"mode": "endpoint", "api_url": url, "model": "tiny", "tokenizer": str(tiny_model)}
        results, settings = exam_log_likelihood(target, {"pceb_mcq": EXAM[:8]}, {"lm_eval_tasks": [str(broken)]},
                                                tmp_path / "lm_eval")  # fmt: skip
    assert results["pceb_mcq_ll"]["n"] == len(single_answer(EXAM[:8])[0])
    assert results["lm_eval_broken"]["skipped"].startswith(f"{broken}: lm-eval failed")
    assert set(settings) == {"pceb_mcq_ll", "lm_eval_broken"}

    def garbage(request: dict) -> dict:  # the probe is answered well, lm-eval's own requests are not
        if isinstance(request["prompt"], str):
            return {"choices": [{"index": 0, "logprobs": {"token_logprobs": [None, -1.0], "top_logprobs": []}}]}
        return {"choices": [{"index": 0, "text": ""}]}  # no logprobs at all

    with openai_stub(lambda messages: "好的", completions=garbage) as (url, _):
        target = {"mode": "endpoint", "api_url": url, "model": "tiny", "tokenizer": str(tiny_model)}
        results, _ = exam_log_likelihood(target, {"pceb_mcq": EXAM[:8]}, {}, tmp_path / "again")
    assert results["pceb_mcq_ll"]["skipped"].startswith("pceb_mcq_ll: lm-eval failed")
    assert results["pceb_mcq_ll"]["left_to_evalscope"] == {"multi_answer_questions": single_answer(EXAM[:8])[1]}


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
    tasks = exam_tasks({"pceb_mcq": EXAM}, tmp_path)[0]
    keys: list[str] = []
    with openai_stub(lambda messages: "好的", completions=_tiny_completions(tiny_model), authorizations=keys) as (
        url,
        _,
    ):
        assert logprobs_refusal(url, "tiny") is None
        # no local tokenizer: the server has no /tokenize, so lm-eval loads the one the model's name points at
        served = run_tasks(tasks, {"mode": "endpoint", "api_url": url, "model": str(tiny_model),
                                   "api_key": "team-key"})["pceb_mcq_ll"]  # fmt: skip
    assert keys and set(keys[1:]) == {"Bearer team-key"}  # the evaluation's key, not OPENAI_API_KEY
    assert [it["chosen"] for it in served["items"]] == [it["chosen"] for it in result["items"]]
    assert served["acc"] == result["acc"] and served["n"] == result["n"]
    assert not math.isnan(served["acc_ci95"][0])

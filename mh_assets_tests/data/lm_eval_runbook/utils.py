"""The runbook task's helper: one log-likelihood choice scores only a question with one right answer."""


def single_answer(dataset):  # noqa: ANN001, ANN201 (lm-eval hands a datasets.Dataset)
    return dataset.filter(lambda doc: len(doc["answer"].replace(",", "")) == 1)

"""Where steps execute: in the run's process (the default), or on Kubernetes each in a pod of its own
(``MH_STEP_PODS=1``, set in deploy/k8s/values.yaml), sized by the step's ``dagster-k8s/config`` op tag, so a GPU
step's pod asks for its GPUs and lands on a GPU node while the rest of the run stays on CPU nodes."""

import os

import dagster as dg


@dg.definitions
def executor() -> dg.Definitions:
    if os.environ.get("MH_STEP_PODS") != "1":
        return dg.Definitions()
    from dagster_k8s import k8s_job_executor

    return dg.Definitions(executor=k8s_job_executor)

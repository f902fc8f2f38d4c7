"""Kubernetes without a cluster: the step tag through dagster-k8s's own pod builder, the Helm values against what
the project reads and against dagster-k8s's run launcher schema, and the images' install lines (deploy/k8s)."""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster_k8s import K8sRunLauncher
from dagster_k8s.job import (
    USER_DEFINED_K8S_CONFIG_KEY,
    DagsterK8sJobConfig,
    construct_dagster_k8s_job,
    get_user_defined_k8s_config,
)

from mh_assets.k8s import GPU_RESOURCE, K8S_TAG, step_k8s_config
from mh_assets.lane import load_lanes
from mh_assets.procs import SECRET_ENV
from mh_assets.store import open_store

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
SECRET = "mh-assets-secrets"
H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
GPU_TAINT = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
# camelCase, as kubectl writes it: dagster-k8s converts Kubernetes keys itself
SPOT = {"key": "spot", "operator": "Equal", "value": "true", "effect": "NoExecute", "tolerationSeconds": 600}

STEPS = {
    "1 GPU": (1, "80Gi", "16", H100, [GPU_TAINT]),
    "8 GPUs": (8, "640Gi", "96", H100, [GPU_TAINT, SPOT]),
    "CPU": (0, "8Gi", "2", {}, []),
}


def _snake(key: str) -> str:
    """The chart's camelCase value key as the instance setting it renders (``runK8sConfig`` -> ``run_k8s_config``)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key).lower()


def _step_pod(tag: dict) -> dg.AssetsDefinition:
    @dg.asset(op_tags={K8S_TAG: tag}, pool="gpu")
    def heavy_step() -> None: ...

    return heavy_step


@pytest.mark.parametrize("step", STEPS.values(), ids=STEPS.keys())
def test_step_tag_builds_the_pod_dagster_k8s_launches(step):
    gpus, memory, cpu, node_selector, tolerations = step
    tags = _step_pod(step_k8s_config(gpus, memory, cpu, node_selector, tolerations)).op.tags
    assert isinstance(tags[K8S_TAG], str)  # Dagster keeps the dict as the JSON string dagster-k8s parses
    pod = _pod(tags)
    [container] = pod.containers
    expected = {"memory": memory, "cpu": cpu} | ({GPU_RESOURCE: str(gpus)} if gpus else {})
    assert container.resources.requests == expected
    assert container.resources.limits == expected
    assert pod.node_selector == (node_selector or None)
    assert [(t.key, t.operator, t.value, t.effect, t.toleration_seconds) for t in pod.tolerations or []] == [
        (t["key"], t["operator"], t.get("value"), t["effect"], t.get("tolerationSeconds")) for t in tolerations
    ]


def _pod(tags: dict[str, str]):
    """The pod spec dagster-k8s's own builder makes for a step with these op tags."""
    job = construct_dagster_k8s_job(
        DagsterK8sJobConfig(
            job_image="REGISTRY/mh-assets:TAG",
            dagster_home="/opt/dagster/dagster_home",
            instance_config_map="mh-assets-dagster-instance",
            postgres_password_secret="mh-assets-postgresql",
            env_secrets=[SECRET],
        ),
        args=["dagster", "api", "execute_step"],
        job_name="dagster-step-heavy",
        user_defined_k8s_config=get_user_defined_k8s_config(tags),
    )
    return job.spec.template.spec


@pytest.mark.parametrize("lane", ["7b", "32b"])
def test_every_gpu_step_of_a_lane_asks_for_its_gpus_on_its_nodes(lane):
    from mh_assets import defs

    needs = load_lanes()[lane].gpu
    for stage in ("lora_adapter", "merged_model", "base_scores", "benchmark_scores"):
        pod = _pod(defs.resolve_assets_def(f"{stage}_{lane}").op.tags)
        [container] = pod.containers
        assert container.resources.requests[GPU_RESOURCE] == str(needs.count), stage
        assert container.resources.limits["memory"] == needs.k8s.memory
        assert pod.node_selector == needs.k8s.node_selector and pod.tolerations
    assert K8S_TAG not in defs.resolve_assets_def("lora_adapter_tiny").op.tags  # a CPU lane stays in its run pod


@pytest.mark.parametrize(("env", "executor"), [({"MH_STEP_PODS": "1"}, "k8s"), ({}, "multi_or_in_process_executor")])
def test_steps_get_pods_of_their_own_only_when_asked(env, executor):
    probe = "from mh_assets import defs; print(defs.resolve_job_def('7b_lane').executor_def.name)"
    clean = {k: v for k, v in os.environ.items() if k != "MH_STEP_PODS"}
    out = subprocess.run(
        [sys.executable, "-c", probe], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == executor


def test_step_tag_is_dagster_k8s_key_and_refuses_nonsense():
    assert K8S_TAG == USER_DEFINED_K8S_CONFIG_KEY
    assert step_k8s_config(0, "4Gi") == {
        "container_config": {"resources": {"requests": {"memory": "4Gi"}, "limits": {"memory": "4Gi"}}}
    }
    with pytest.raises(ValueError, match="gpus"):
        step_k8s_config(-1, "4Gi")
    with pytest.raises(ValueError, match="memory"):
        step_k8s_config(1, "")


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load((K8S / "values.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _deployment(values: dict) -> dict:
    [deployment] = values["dagster-user-deployments"]["deployments"]
    return deployment


def test_values_code_location(values, pyproject):
    assert values["dagster-user-deployments"]["enabled"]
    deployment = _deployment(values)
    assert deployment["name"] == "mh-assets"
    assert deployment["dagsterApiGrpcArgs"] == ["-m", pyproject["tool"]["dagster"]["module_name"]]
    assert deployment["port"] == 3030
    assert set(deployment["image"]) == {"repository", "tag", "pullPolicy"}
    assert deployment["includeConfigInLaunchedRuns"]["enabled"]  # its env and Secret reach run and step pods
    env = {e["name"]: e["value"] for e in deployment["env"]}
    # artifacts on an object store; each pod's local copy on a volume mounted in the code server and every run pod
    store = open_store(env["MH_ARTIFACTS_DIR"], env["MH_ARTIFACTS_CACHE"])
    assert store.remote == "s3://BUCKET/mh-assets" and env["AWS_ENDPOINT_URL"]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    for pod in (deployment, launcher):
        [mount] = pod["volumeMounts"]
        assert store.root.is_relative_to(mount["mountPath"])
        assert pod["volumes"] == [{"name": mount["name"], "emptyDir": {"sizeLimit": "1Ti"}}]
    claim = yaml.safe_load((K8S / "scratch-pvc.yaml").read_text(encoding="utf-8"))  # the shared alternative
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert f"claimName: {claim['metadata']['name']}" in (K8S / "scratch-pvc.yaml").read_text(encoding="utf-8")


def test_values_chart_version_is_pyprojects_dagster(pyproject):
    [dagster] = [d for d in pyproject["project"]["dependencies"] if d.startswith("dagster==")]
    readme = (K8S / "README.md").read_text(encoding="utf-8")
    assert re.findall(r"helm upgrade --install mh-assets dagster/dagster --version (\S+)", readme) == [
        dagster.removeprefix("dagster==")
    ]


def test_every_secret_the_project_reads_comes_from_the_secret(values):
    resources = (ROOT / "mh_assets" / "defs" / "resources.py").read_text(encoding="utf-8")
    read = {name for name in SECRET_ENV if f'"{name}"' in resources}
    assert {"SWANLAB_API_KEY", "HF_TOKEN", "MODELSCOPE_API_TOKEN"} <= read
    read |= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}  # s3fs reads them, for the artifacts
    example = (K8S / "secrets.env.example").read_text(encoding="utf-8").splitlines()
    keys = {line.split("=", 1)[0] for line in example if line and not line.startswith("#")}
    assert read <= keys
    assert {"name": SECRET} in _deployment(values)["envSecrets"]
    assert {"name": SECRET} in values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]
    assert not {e["name"] for e in _deployment(values)["env"]} & keys  # no secret in plain values
    assert f"create secret generic {SECRET} --from-env-file=" in (K8S / "README.md").read_text(encoding="utf-8")


def test_values_postgres_is_external_with_its_password_in_a_secret(values):
    assert values["postgresql"]["enabled"] is False
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"] == "mh-assets-postgresql"
    assert values["postgresql"]["postgresqlHost"]
    local = yaml.safe_load((ROOT / "deploy" / "postgres" / "dagster.yaml").read_text(encoding="utf-8"))
    assert values["postgresql"]["postgresqlScheme"] == local["storage"]["postgres"]["postgres_db"]["scheme"]


def test_values_run_launcher_keys_are_k8s_run_launcher_fields(values):
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    config = launcher["config"]["k8sRunLauncher"]
    fields = K8sRunLauncher.config_type()
    assert {_snake(key) for key in config} <= set(fields)
    assert {_snake(key) for key in config["runK8sConfig"]} <= set(fields["run_k8s_config"].config_type.fields)
    assert config["jobNamespace"] == "mh-assets"
    assert all(set(source) == {"name"} for source in config["envSecrets"])


def test_values_pools_and_run_monitoring_as_in_the_project_instance(values):
    project = yaml.safe_load((ROOT / "dagster.yaml").read_text(encoding="utf-8"))
    concurrency = values["concurrency"]
    assert concurrency["enabled"]
    assert concurrency["pools"]["defaultLimit"] == 1  # pool gpu: one step at a time
    assert {_snake(k): v for k, v in concurrency["pools"].items()} == project["concurrency"]["pools"]
    daemon = values["dagsterDaemon"]
    assert daemon["enabled"]
    monitoring = {_snake(k): v for k, v in daemon["runMonitoring"].items()}
    assert monitoring["enabled"] is True
    for key in ("cancel_timeout_seconds", "poll_interval_seconds"):
        assert monitoring[key] == project["run_monitoring"][key]
    assert monitoring["start_timeout_seconds"] >= project["run_monitoring"]["start_timeout_seconds"]


def _pip_installs(dockerfile: str) -> list[str]:
    """The Dockerfile's ``pip install`` commands, continuation lines joined."""
    text = (K8S / dockerfile).read_text(encoding="utf-8").replace("\\\n", " ")
    commands = (c.strip() for line in text.splitlines() if line.startswith("RUN ") for c in line[4:].split("&&"))
    return [c for c in commands if c.startswith("pip install")]


def test_cpu_image_installs_the_lock_with_cpu_torch():
    torch_spec = re.search(r"^TORCH_SPEC \?= (\S+)$", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M)[1]
    installs = _pip_installs("Dockerfile")
    assert f"pip install {torch_spec} --index-url https://download.pytorch.org/whl/cpu" in installs
    assert "pip install -c constraints.txt -e ." in installs
    assert not any("[dev]" in c or "[gpu]" in c for c in installs)
    assert "FROM python:3.11-slim" in (K8S / "Dockerfile").read_text(encoding="utf-8")


def test_gpu_image_installs_the_lock_then_the_gpu_extra():
    installs = _pip_installs("Dockerfile.gpu")
    lock = installs.index("pip install -c constraints.txt -e .")
    assert installs.index("pip install --no-build-isolation -e '.[gpu]'") > lock
    assert not any("[dev]" in c or "download.pytorch.org/whl/cpu" in c for c in installs)
    text = (K8S / "Dockerfile.gpu").read_text(encoding="utf-8")
    assert "ARG CUDA_IMAGE=nvidia/cuda:" in text
    assert "python3.11 -m venv" in text

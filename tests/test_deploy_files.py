"""deploy/ checked without a container engine or cluster: parsed, validated against schemas where one exists,
commands identical to the ones the loopback tests run, images, ports and environment consistent."""
from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from flows import serve
from flows.settings import ENV_VARS, Settings
from test_deploy_dask_s3 import loopback_replacements, on_loopback  # pytest puts tests/ on sys.path

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
IMAGE = "saepress:0.1.0"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def k8s() -> list[dict]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / "k8s" / "dask.yaml").read_text()) if doc]


def _option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def _published(service: dict) -> set[int]:
    return {int(str(p).split(":")[-1]) for p in service.get("ports", [])}


def test_saepress_services_share_one_image_built_from_the_dockerfile(services):
    ours = {name: s for name, s in services.items() if s.get("image", "").startswith("saepress")}
    assert set(ours) == {"prefect-server", "prefect-worker", "mlflow", "dask-scheduler", "dask-worker"}
    for service in ours.values():
        assert service["image"] == IMAGE
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).resolve() == \
            DEPLOY / "Dockerfile"
    for service in services.values():  # every third-party image is pinned
        assert not service["image"].endswith(":latest") and ":" in service["image"]


def test_dockerfile_matches_the_project():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    python = re.search(r"^FROM python:(\d+\.\d+)", dockerfile, re.M).group(1)
    assert f">={python}" in project["requires-python"]
    torch = next(d for d in project["dependencies"] if d.startswith("torch=="))
    assert torch in dockerfile, "the CPU torch wheel must be the version pyproject.toml pins"
    assert 'pip install ".[server]"' in dockerfile  # the MLflow server lives in the server extra
    for source in re.findall(r"^COPY (\S+) ", dockerfile, re.M):
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    for package in ("sae_model", "tasks", "flows"):
        assert f"COPY {package} " in dockerfile
    exposed = {int(p) for p in re.search(r"^EXPOSE (.+)$", dockerfile, re.M).group(1).split()}
    assert exposed == {4200, 5000, 8786, 8787}


def test_commands_are_the_ones_the_loopback_tests_run(services, k8s):
    prefect = services["prefect-server"]["command"]
    assert prefect == serve.server_command("0.0.0.0", 4200)  # test_serve_schedule runs it on 127.0.0.1
    # test_deploy_dask_s3 runs these after on_loopback(), which swaps addresses only.
    replacements = loopback_replacements(1111, 2222)
    for name in ("dask-scheduler", "dask-worker"):
        command = services[name]["command"]
        swapped = on_loopback(command, replacements)
        assert [t for t in command if t not in replacements] == [t for t in swapped if t not in replacements.values()]
    containers = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]
                  for d in k8s if d["kind"] == "Deployment"}
    assert containers["dask-scheduler"]["command"] == services["dask-scheduler"]["command"]
    assert containers["dask-worker"]["command"] == services["dask-worker"]["command"]
    assert {c["image"] for c in containers.values()} == {IMAGE}


def test_ports_and_addresses_agree(services):
    scheduler = services["dask-scheduler"]["command"]
    scheduler_port = int(_option(scheduler, "--port"))
    dashboard_port = int(_option(scheduler, "--dashboard-address").rsplit(":", 1)[1])
    assert _published(services["dask-scheduler"]) == {scheduler_port, dashboard_port}
    assert services["dask-worker"]["command"][2] == f"tcp://dask-scheduler:{scheduler_port}"
    prefect_port = int(_option(services["prefect-server"]["command"], "--port"))
    assert _published(services["prefect-server"]) == {prefect_port}
    mlflow = services["mlflow"]["command"]
    mlflow_port = int(_option(mlflow, "--port"))
    assert _published(services["mlflow"]) == {mlflow_port}
    assert f"mlflow:{mlflow_port}" in _option(mlflow, "--allowed-hosts").split(",")
    minio_port = int(_option(services["minio"]["command"], "--address").lstrip(":"))

    expected = {
        "PREFECT_API_URL": f"http://prefect-server:{prefect_port}/api",
        "SAEPRESS_DASK_ADDRESS": f"tcp://dask-scheduler:{scheduler_port}",
        "MLFLOW_TRACKING_URI": f"http://mlflow:{mlflow_port}",
        "AWS_ENDPOINT_URL": f"http://minio:{minio_port}",
    }
    for name in ("prefect-worker", "dask-worker"):
        environment = services[name]["environment"]
        assert {k: environment[k] for k in expected} == expected
    assert {"SAEPRESS_DASK_ADDRESS", "MLFLOW_TRACKING_URI"} <= set(ENV_VARS.values())
    for uri in expected.values():  # each client address names a service of this file
        assert urlparse(uri).hostname in services


def test_servers_use_the_database_and_buckets_the_file_creates(services):
    init = (DEPLOY / "postgres" / "init.sql").read_text()
    prefect_db = services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    mlflow_db = _option(services["mlflow"]["command"], "--backend-store-uri")
    for url, scheme in ((prefect_db, "postgresql+asyncpg"), (mlflow_db, "postgresql")):
        parsed = urlparse(url)
        assert parsed.scheme == scheme and parsed.hostname == "postgres"
        assert f"CREATE DATABASE {parsed.path.lstrip('/')};" in init
    buckets = {b.split("/", 1)[1] for b in services["buckets"]["entrypoint"] if b.startswith("s3/")}
    assert urlparse(_option(services["mlflow"]["command"], "--artifacts-destination")).hostname in buckets
    prefect_yaml = yaml.safe_load((DEPLOY / "prefect.yaml").read_text())
    for deployment in prefect_yaml["deployments"]:
        for value in deployment["parameters"].values():
            if isinstance(value, str) and value.startswith("s3://"):
                assert urlparse(value).hostname in buckets
    for name, service in services.items():
        for condition in service.get("depends_on", {}):
            assert condition in services, f"{name} depends on unknown service {condition}"


def test_prefect_yaml_is_valid_and_matches_the_flows(services):
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.flows import Flow

    raw = yaml.safe_load((DEPLOY / "prefect.yaml").read_text())
    model = PrefectYamlModel.model_validate(raw)
    worker = services["prefect-worker"]["command"]
    assert {d.work_pool.name for d in model.deployments} == {_option(worker, "--pool")}
    assert _option(worker, "--type") == "process"
    for deployment in raw["deployments"]:
        path, function = deployment["entrypoint"].split(":")
        assert (REPO / path).is_file()
        flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), function)
        assert isinstance(flow, Flow)
        key = next(k for k, (module, name) in serve.FLOWS.items() if name == function)
        [schedule] = serve.parse_schedules({deployment["name"]: {
            "flow": key, **deployment["schedules"][0], "parameters": deployment["parameters"]}})
        serve.check_parameters(schedule, flow.fn)
        assert deployment["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}


def test_example_config_declares_the_same_jobs_as_prefect_yaml():
    settings = Settings.resolve(config_path=REPO / "saepress.example.toml")
    schedules = {s.name: s for s in serve.parse_schedules(settings.schedules)}
    deployments = yaml.safe_load((DEPLOY / "prefect.yaml").read_text())["deployments"]
    assert set(schedules) == {d["name"] for d in deployments}
    for deployment in deployments:
        schedule = schedules[deployment["name"]]
        assert serve.FLOWS[schedule.flow][1] == deployment["entrypoint"].split(":")[1]
        assert (schedule.cron, schedule.timezone) == (deployment["schedules"][0]["cron"],
                                                      deployment["schedules"][0]["timezone"])
        assert set(schedule.parameters) == set(deployment["parameters"])


def test_kubernetes_manifests_validate_against_the_schema(k8s):
    import kubernetes_validate  # in the dev extra

    assert {d["kind"] for d in k8s} >= {"Deployment", "Service"}
    for document in k8s:
        kubernetes_validate.validate(document, "1.33", strict=True)  # raises ValidationError


def test_kubernetes_objects_refer_to_each_other(k8s):
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in k8s}
    service = by_kind[("Service", "dask-scheduler")]
    scheduler = by_kind[("Deployment", "dask-scheduler")]["spec"]["template"]
    assert service["spec"]["selector"].items() <= scheduler["metadata"]["labels"].items()
    container_ports = {p["name"]: p["containerPort"] for p in scheduler["spec"]["containers"][0]["ports"]}
    command = scheduler["spec"]["containers"][0]["command"]
    assert container_ports == {"comm": int(_option(command, "--port")),
                               "dashboard": int(_option(command, "--dashboard-address").lstrip(":"))}
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(container_ports)
    worker = by_kind[("Deployment", "dask-worker")]["spec"]
    assert worker["selector"]["matchLabels"].items() <= worker["template"]["metadata"]["labels"].items()
    comm = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "comm")
    assert worker["template"]["spec"]["containers"][0]["command"][2] == f"tcp://dask-scheduler:{comm}"
    config = worker["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"]
    assert ("ConfigMap", config) in by_kind


def test_no_saepress_container_mounts_a_shared_volume(services, k8s):
    # WORKDIRs and shard sets are s3:// URLs (test_deploy_dask_s3 runs the whole pipeline so, with workers that
    # share no disk): a shared volume would only hide a path that one machine writes and another cannot see.
    for name in ("prefect-worker", "dask-worker"):
        assert "volumes" not in services[name], name
    assert set(yaml.safe_load((DEPLOY / "compose.yaml").read_text())["volumes"]) == {"postgres", "minio"}
    assert not [d for d in k8s if d["kind"] == "PersistentVolumeClaim"]
    for deployment in (d for d in k8s if d["kind"] == "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        assert "volumes" not in spec and not any("volumeMounts" in c for c in spec["containers"])
    for job in yaml.safe_load((DEPLOY / "prefect.yaml").read_text())["deployments"]:
        for key in ("out", "workdir", "source"):
            if key in job["parameters"]:
                assert job["parameters"][key].startswith("s3://"), (job["name"], key)

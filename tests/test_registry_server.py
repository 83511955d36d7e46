"""Training against a real `mlflow server` on loopback: runs, served artifacts, the registry and its aliases.

The server needs the full `mlflow` package (the `server` extra, part of the `dev` extra). It can live in another
environment: set SAEPRESS_TEST_MLFLOW to its `mlflow` executable.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from test_training import TINY_MODEL, assert_tracked, free_port, make_workdir, tiny_training  # noqa: F401


SAMPLES = Path(__file__).resolve().parents[1] / "flows" / "sample_data"


def server_command() -> list[str] | None:
    if os.environ.get("SAEPRESS_TEST_MLFLOW"):
        return [os.environ["SAEPRESS_TEST_MLFLOW"]]
    try:
        version("mlflow")  # the full package, not only mlflow-skinny
    except PackageNotFoundError:
        return None
    return [sys.executable, "-m", "mlflow"]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """``(url, artifacts folder)`` of a server on 127.0.0.1 with a SQLite store, stopped after the module."""
    command = server_command()
    if command is None:
        pytest.skip("full mlflow not installed: pip install 'saepress[server]' or set SAEPRESS_TEST_MLFLOW")
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = open(root / "server.log", "wb")
    server = subprocess.Popen(
        command + ["server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                   "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                   "--artifacts-destination", str(root / "artifacts"), "--serve-artifacts"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # own group: stopped with its workers
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"mlflow server exited with {server.returncode}: "
                            f"{(root / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not healthy after 120 s: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url, root / "artifacts"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.mark.slow
def test_train_flow_against_mlflow_server(tmp_path, mlflow_server, monkeypatch, prefect_harness, tiny_training):
    from mlflow import MlflowClient

    from flows.compress import compress_flow
    from flows.train import train_flow
    from sae_model import Codec

    url, artifacts = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    workdir = make_workdir(tmp_path, images=5, val=2, per_image=300)
    name = "codec-server-test"

    # Forced: a tiny model never beats the shipped default, so it would not become champion on its own.
    first = train_flow(workdir=str(workdir), steps=12, seed=0, model_name=name, promote=True)
    client = MlflowClient(url)
    run = client.get_run(first["run_id"])
    # Artifacts went through the server into its artifacts folder, not into the client's saepress home.
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    assert sorted(p.name for p in artifacts.rglob("weights.pt")) == ["weights.pt"]
    assert_tracked(client, first["run_id"], 12, name, first["version"])
    assert first["decision"]["decision"] == "promoted" and first["decision"]["reason"] == "forced by --promote"

    second = train_flow(workdir=str(workdir), steps=12, seed=0, model_name=name)
    assert second["decision"]["decision"] == "kept"
    assert second["decision"]["champion_bd_rate"] == pytest.approx(second["decision"]["candidate_bd_rate"])
    aliases = {alias: str(client.get_model_version_by_alias(name, alias).version)
               for alias in ("champion", "candidate")}
    assert aliases == {"champion": first["version"], "candidate": second["version"]}

    champion = Codec.load(f"models:/{name}@champion")
    assert champion.fingerprint == client.get_model_version(name, first["version"]).tags["fingerprint"]
    assert champion.config["K"] == TINY_MODEL["K"]

    # Compression with the champion logs its lineage run to the same server.
    compressed = compress_flow(source=str(SAMPLES / "*.png"), out=str(tmp_path / "shards"),
                               model=f"models:/{name}@champion")
    assert compressed["problems"] == []
    lineage = client.search_runs([client.get_experiment_by_name("saepress-compress").experiment_id])
    assert [run.data.tags["saepress.model_version"] for run in lineage] == [first["version"]]
    assert lineage[0].data.tags["saepress.model_fingerprint"] == champion.fingerprint

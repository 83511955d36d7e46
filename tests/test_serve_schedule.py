"""`saepress serve` for real: it starts a persistent `prefect server` on loopback, registers a compress deployment
with a short interval schedule, and the server's scheduler (not a manual trigger) fires a compression that
completes and commits a manifest. Everything started is stopped; the test fails if anything outlives it."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from flows.serve import api_url, server_healthy
from tasks import shards, txlog

pytestmark = pytest.mark.slow

SAMPLES = Path(__file__).resolve().parents[1] / "flows" / "sample_data"
INTERVAL_S = 10
SERVER_UP_S = 150     # a fresh server migrates its database first; 2 shared cores
FIRST_RUN_S = 180     # first scheduled run: registration, scheduler, runner poll, ingest + compress of 3 images
STOP_S = 60

# `saepress serve --config CONFIG --port PORT`, called through its Python entry so the port can be chosen.
SERVE = "import sys; from flows.serve import serve; sys.exit(serve(sys.argv[1], port=int(sys.argv[2])))"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(url: str, path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{url}{path}", data=data, method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _wait(what: str, condition, timeout: float, serve_proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if serve_proc.poll() is not None:
            pytest.fail(f"saepress serve exited ({serve_proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}:\n{log.read_text()[-3000:]}")


def _stop_tree(proc: subprocess.Popen, leftovers: set[psutil.Process]) -> None:
    """SIGINT (Ctrl-C) to serve; whatever it started and did not stop in time is killed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(STOP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for child in leftovers:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


def test_serve_starts_a_server_and_the_schedule_fires_a_compression(tmp_path):
    port = _free_port()
    url = api_url("127.0.0.1", port)
    name = f"every-{INTERVAL_S}s"
    out = tmp_path / "shards"
    config = tmp_path / "saepress.toml"
    config.write_text(f"""
[saepress]
home = "{tmp_path / 'home'}"
dask_workers = 1

[saepress.schedules.{name}]
flow = "compress"
interval = {INTERVAL_S}
parameters = {{source = "{SAMPLES}/*.png", out = "shards", quality = 40}}
""")
    env = {**os.environ, "PREFECT_RUNNER_POLL_FREQUENCY": "2", "PREFECT_HOME": str(tmp_path / "client-prefect")}
    env.pop("PREFECT_API_URL", None)  # the point: no server configured, serve must start one
    log = tmp_path / "serve.log"
    with open(log, "wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-c", SERVE, str(config), str(port)], env=env, cwd=tmp_path,
                                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    started: set[psutil.Process] = set()
    try:
        _wait("the Prefect server", lambda: server_healthy(url), SERVER_UP_S, proc, log)

        def completed_run():
            started.update(psutil.Process(proc.pid).children(recursive=True))
            # Runs of the deployment only: the ingest subflow inside compress completes first.
            runs = _api(url, "/flow_runs/filter", {"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
                                                   "deployments": {"name": {"any_": [name]}}, "limit": 10})
            return runs[0] if runs else None

        run = _wait("a scheduled compression to complete", completed_run, FIRST_RUN_S, proc, log)
        started.update(psutil.Process(proc.pid).children(recursive=True))

        # Fired by the deployment's schedule, not by `prefect deployment run` or the API.
        assert run["auto_scheduled"] is True
        assert run["created_by"]["type"] == "SCHEDULE"
        deployment = _api(url, f"/deployments/{run['deployment_id']}")
        assert deployment["name"] == name
        assert deployment["entrypoint"] == "flows.compress.compress_flow"
        assert run["parameters"]["out"] == str(out)  # relative to saepress.toml
        fs, root = shards.open_dir(str(out))
        manifest = txlog.read_manifest(fs, root)
        assert manifest["totals"]["coded"] + manifest["totals"]["passthrough"] == 3
    finally:
        _stop_tree(proc, started)
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert not server_healthy(url), "saepress serve left its Prefect server running"
    alive = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left running: {[p.cmdline() for p in alive]}"

"""Compress through a real Dask cluster (`dask scheduler` + two `dask worker` processes on loopback), and survive
losing a worker in the middle of the job."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from test_compress import make_archive, manifest, stored_ids

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
DASK = str(Path(sys.executable).with_name("dask"))


@pytest.fixture
def cluster(tmp_path):
    """Scheduler and two nanny-less workers (killing a worker process really loses it)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    info = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(info)], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not info.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        workers = [subprocess.Popen([DASK, "worker", address, "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1",
                                     "--no-dashboard", "--local-directory", str(tmp_path / f"w{n}")],
                                    env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for n in range(2)]
        procs += workers
        import distributed

        with distributed.Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address, workers
    finally:
        for proc in reversed(procs):
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("kill_worker", [False, True])
def test_compress_on_a_real_cluster(cluster, tmp_path, prefect_harness, kill_worker):
    from flows.access import verify
    from flows.compress import compress_flow, decompress_flow

    address, workers = cluster
    expected = make_archive(tmp_path / "src", count=12, size=40)
    out = tmp_path / "set"
    outcome = {}
    job = threading.Thread(target=lambda: outcome.update(compress_flow(
        source=str(tmp_path / "src"), out=str(out), shard_max_items=1, dask_address=address)))
    job.start()
    if kill_worker:
        deadline = time.monotonic() + 120
        while not list((out / "shards").glob("*.parquet")) and time.monotonic() < deadline and job.is_alive():
            time.sleep(0.05)
        workers[0].kill()
    job.join(timeout=300)
    assert not job.is_alive()
    if outcome.get("problems"):  # the lost worker took a batch past its retries: a rerun finishes the job
        outcome = compress_flow(source=str(tmp_path / "src"), out=str(out), shard_max_items=1, dask_address=address)
    assert outcome["problems"] == []
    ids = stored_ids(out)
    assert len(ids) == len(set(ids)) == manifest(out)["totals"]["items"]
    assert manifest(out)["totals"]["files"] == len(expected)
    assert verify(str(out))["problems"] == []
    restored = decompress_flow(sharddir=str(out), out=str(tmp_path / "restored"), dask_address=address)
    assert restored["problems"] == [] and restored["written"] == len(expected)

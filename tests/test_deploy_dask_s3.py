"""The scale-out path on loopback: a Dask scheduler and two workers started with deploy/compose.yaml's commands,
an S3 server (moto), and ingest, extract, train and compress whose source, WORKDIR and SHARDDIR are s3:// URLs.
The workers run in their own folders with no access to the test's files: like workers on other machines, they see
only S3."""
from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "flows" / "sample_data"
BUCKET = "saepress-deploy-test"  # the session shares one S3 server: one bucket name per module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def compose_command(service: str) -> list[str]:
    return yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())["services"][service]["command"]


def on_loopback(command: list[str], replacements: dict[str, str]) -> list[str]:
    """A compose command with container addresses swapped for loopback ones, nothing else changed."""
    return [replacements.get(token, token) for token in command]


def loopback_replacements(scheduler_port: int, dashboard_port: int) -> dict[str, str]:
    return {"0.0.0.0": "127.0.0.1", "8786": str(scheduler_port), ":8787": f"127.0.0.1:{dashboard_port}",
            "tcp://dask-scheduler:8786": f"tcp://127.0.0.1:{scheduler_port}"}


@pytest.fixture
def dask_cluster(s3_env, tmp_path):
    """`dask scheduler` + 2 x `dask worker`, exactly as compose.yaml runs them, on loopback ports."""
    import distributed

    replacements = loopback_replacements(_free_port(), _free_port())
    address = replacements["tcp://dask-scheduler:8786"]
    env = {**os.environ, **s3_env, "SAEPRESS_HOME": str(tmp_path / "worker-home")}
    env.pop("SAEPRESS_DASK_ADDRESS", None)
    processes = []

    def start(service: str, name: str) -> None:
        folder = tmp_path / name
        folder.mkdir()
        with open(folder / "log", "wb") as log:
            processes.append(subprocess.Popen(on_loopback(compose_command(service), replacements), cwd=folder,
                                              env=env, stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True))

    try:
        start("dask-scheduler", "scheduler")
        start("dask-worker", "worker-1")
        start("dask-worker", "worker-2")
        with distributed.Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for process in reversed(processes):  # workers first, then the scheduler
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_compose_commands_run_on_loopback():
    replaced = on_loopback(compose_command("dask-scheduler"), loopback_replacements(1234, 1235))
    assert replaced == ["dask", "scheduler", "--host", "127.0.0.1", "--port", "1234", "--dashboard-address",
                        "127.0.0.1:1235"]
    assert on_loopback(compose_command("dask-worker"), loopback_replacements(1234, 1235))[:3] == [
        "dask", "worker", "tcp://127.0.0.1:1234"]


def test_ingest_extract_train_compress_on_a_dask_cluster_with_everything_in_s3(prefect_harness, dask_cluster,
                                                                               tmp_path, monkeypatch):
    """WORKDIR and SHARDDIR are s3:// URLs: the driver and the workers share no disk, only the S3 server."""
    import fsspec
    import pyarrow.parquet as pq
    from test_training import TINY_LOOP, TINY_MODEL  # pytest puts tests/ on sys.path

    from flows.access import verify
    from flows.compress import compress_flow
    from flows.extract import extract_flow
    from flows.ingest import ingest_flow
    from flows.train import train_flow
    from tasks import patches, shards, training, txlog

    fs = fsspec.filesystem("s3")
    fs.mkdir(BUCKET)
    for image in sorted(SAMPLES.glob("*.png")):
        fs.put_file(str(image), f"{BUCKET}/archive/{image.name}")
    source = f"s3://{BUCKET}/archive/"
    workdir, sharddir = f"s3://{BUCKET}/work/archive", f"s3://{BUCKET}/shards/archive"

    ingested = ingest_flow(source=source, out=workdir, dask_address=dask_cluster)
    assert not ingested["problems"], ingested
    assert ingested["catalog"] == f"{workdir}/catalog.parquet" and ingested["ok"] == 3
    # Idempotent on S3 too: the catalog's rows are kept, nothing is probed again.
    with fs.open(f"{BUCKET}/work/archive/catalog.parquet") as handle:
        rows = pq.read_table(handle).to_pylist()
    again = ingest_flow(source=source, out=workdir, dask_address=dask_cluster)
    assert again["new"] == 0 and "already catalogued 3," in again["report"][1], again["report"]
    with fs.open(f"{BUCKET}/work/archive/catalog.parquet") as handle:
        assert pq.read_table(handle).to_pylist() == rows

    # One image per part: three tasks for two workers, each writing its part to S3 with one PUT.
    monkeypatch.setattr(patches, "BATCH_IMAGES", 1)
    extracted = extract_flow(workdir=workdir, patches_per_image=64, dask_address=dask_cluster)
    assert not extracted["problems"], extracted
    assert fs.ls(f"{BUCKET}/work/archive/patches", detail=False) == [
        f"{BUCKET}/work/archive/patches/part-{index:05d}.parquet" for index in range(3)]

    # Training streams the parts from S3 in this process; its model then codes the shards on the workers.
    monkeypatch.setattr(training, "training_config",
                        functools.partial(training.training_config, loop=TINY_LOOP, **TINY_MODEL))
    trained = train_flow(workdir=workdir, steps=5, model_name="codec-deploy-test")
    result = compress_flow(source=workdir, out=sharddir, model=trained["model_uri"], quality=40, shard_max_items=1,
                           dask_address=dask_cluster)
    assert not result["problems"], result
    assert result["model"]["uri"] == trained["model_uri"]

    s3fs, root = shards.open_dir(sharddir)
    manifest = txlog.read_manifest(s3fs, root)
    assert manifest["totals"]["coded"] + manifest["totals"]["passthrough"] == 3
    assert len(manifest["shards"]) == 3
    assert all(s3fs.isfile(f"{root}/{entry['name']}") for entry in manifest["shards"])
    assert not list(tmp_path.rglob("*.parquet")), "a worker wrote a catalog, patches or shards to its local disk"
    checked = verify(sharddir=sharddir, decode=True)
    assert not checked["problems"], checked

"""Fault injection on loopback, bounded in time: corrupt, missing or lost shards, damaged archives, a full disk,
concurrent and racing jobs, killed workers and drivers, exit codes under repetition, an S3 shard set."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_compress import make_archive, manifest, stored_ids

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shard_set(tmp_path_factory, prefect_harness):
    from flows.compress import compress_flow

    base = tmp_path_factory.mktemp("faults")
    make_archive(base / "src")
    result = compress_flow(source=str(base / "src"), out=str(base / "set"), shard_max_items=2)
    assert result["problems"] == []
    return base


@pytest.fixture
def damaged(shard_set, tmp_path):
    copy = tmp_path / "set"
    shutil.copytree(shard_set / "set", copy)
    return copy


@pytest.mark.parametrize("where", [0.5, 0.95])
def test_flipped_byte_is_reported_by_verify_and_decompress(damaged, tmp_path, where):
    from flows.access import verify
    from flows.compress import decompress_flow

    entry = manifest(damaged)["shards"][0]
    path = damaged / entry["name"]
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x40
    path.write_bytes(bytes(data))
    result = verify(str(damaged))
    assert any(p.startswith("corrupt:") and entry["name"] in p for p in result["problems"])
    restored = decompress_flow(sharddir=str(damaged), out=str(tmp_path / "out"))
    assert restored["problems"], "a damaged shard must not decompress silently"
    assert restored["written"] > 0  # the other shards still come back


def test_deleted_shard_is_reported_missing(damaged):
    from flows.access import verify

    entry = manifest(damaged)["shards"][-1]
    (damaged / entry["name"]).unlink()
    problems = verify(str(damaged))["problems"]
    assert any(p.startswith("missing:") and entry["name"] in p for p in problems)


def test_a_shard_file_the_manifest_does_not_list_is_reported_extra_and_nothing_else(damaged):
    from flows.access import verify

    first = manifest(damaged)["shards"][0]
    shutil.copy(damaged / first["name"], damaged / "shards" / "stray.parquet")
    assert verify(str(damaged))["problems"] == [
        f"extra: {damaged}/shards/stray.parquet is not in the manifest (left by an interrupted job; the next compress "
        "removes it)"]


def test_items_stored_in_two_listed_shards_are_each_reported_duplicated(damaged):
    import pyarrow.parquet as pq

    from flows.access import verify
    from tasks import shards, txlog

    fs, root = shards.open_dir(str(damaged))
    current = txlog.read_manifest(fs, root)
    first = current["shards"][0]
    shutil.copy(damaged / first["name"], damaged / "shards" / "copy.parquet")
    txlog.write_manifest(fs, root, dict(current, shards=current["shards"] + [dict(first, name="shards/copy.parquet")]))
    ids = pq.read_table(damaged / first["name"]).column("id").to_pylist()
    assert len(ids) == 2
    assert sorted(verify(str(damaged))["problems"]) == sorted(f"duplicated: item {i[:12]} is stored 2 times"
                                                              for i in ids)


def test_second_job_on_a_locked_sharddir_refuses(shard_set, tmp_path, prefect_harness):
    from flows.compress import compress_flow
    from tasks.errors import ConfigError

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from tasks import shards\n"
         "with shards.lock(sys.argv[1], 'holder'):\n    print('locked', flush=True); time.sleep(120)",
         str(shard_set / "set")], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match="being written by another job"):
            compress_flow(source=str(shard_set / "src"), out=str(shard_set / "set"))
    finally:
        holder.kill()
        holder.wait()
    (shard_set / "set" / ".lock").unlink(missing_ok=True)


_CONTENDER = """
import sys, time
from pathlib import Path
from tasks import shards

real = shards._pid_alive


def slow(*args):  # widen the window between the liveness check and the takeover
    alive = real(*args)
    time.sleep(0.3)
    return alive


shards._pid_alive = slow
print("ready", flush=True)
while not Path(sys.argv[2]).exists():
    time.sleep(0.005)
try:
    with shards.lock(sys.argv[1], "contender"):
        print("held", flush=True)
        time.sleep(1.0)
except shards.LockedError as exc:
    print("refused", exc, flush=True)
"""


@pytest.mark.parametrize("contenders", [2, 3])
def test_racing_processes_take_over_a_stale_lock_one_at_a_time(tmp_path, contenders):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / ".lock").write_text(
        f'{{"pid": {int(dead.stdout)}, "host": "{socket.gethostname()}", "job": "crashed"}}')
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _CONTENDER, str(tmp_path), str(go)], cwd=REPO,
                              stdout=subprocess.PIPE, text=True) for _ in range(contenders)]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready"
        go.touch()
        outcomes = [proc.communicate(timeout=60)[0].split()[0] for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    assert sorted(outcomes) == ["held"] + ["refused"] * (contenders - 1)
    assert not (tmp_path / ".lock").exists(), "the winner releases its lock"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go"]


def _server_of(driver, deadline: float):
    """The temporary Prefect server process a driver started, once it answers."""
    import httpx
    import psutil

    while time.monotonic() < deadline and driver.poll() is None:
        for child in psutil.Process(driver.pid).children():
            command = child.cmdline()
            if "uvicorn" in command:
                port = command[command.index("--port") + 1]
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                        return child
                except httpx.HTTPError:
                    pass
        time.sleep(0.2)
    raise AssertionError(f"no temporary Prefect server answered (driver exit code {driver.poll()})")


def test_killed_driver_leaves_no_prefect_server_running(tmp_path):
    import psutil
    from PIL import Image

    (tmp_path / "src").mkdir()
    Image.new("RGB", (8, 8), "red").save(tmp_path / "src" / "red.png")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    driver = subprocess.Popen([sys.executable, "-m", "flows.cli", "ingest", str(tmp_path / "src"), "--out",
                               str(tmp_path / "work")], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    server = None
    try:
        server = _server_of(driver, time.monotonic() + 240)
        time.sleep(1.0)  # the job is under way: its server is up
        driver.kill()  # only the driver, as the OOM killer would
        driver.wait()
        gone, _ = psutil.wait_procs([server], timeout=30)
        assert gone, f"Prefect's temporary server (pid {server.pid}) outlived its killed driver"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
        if server is not None and server.is_running():
            server.kill()


_READ_ALL = """
import sys
import torch  # loaded by every command that decodes; it makes the exit slow enough for the race to show
from tasks import shards, txlog

fs, root = shards.open_dir(sys.argv[1])
manifest = txlog.read_manifest(fs, root)
index = shards.read_index(fs, root, manifest)
item, shard, _ = next(iter(index.values()))
shards.read_shard(fs, f"{root}/{shard}", ids=[item])
shards.read_shard_bytes(fs.cat_file(f"{root}/{shard}"))
print("OK")
"""


@pytest.fixture(scope="module")
def small_coded_set(tmp_path_factory):
    from PIL import Image
    from test_access import FILES, write_set

    root = tmp_path_factory.mktemp("small") / "set"
    write_set(root, FILES, coded={"c/red.png": Image.new("RGB", (24, 16), (200, 30, 30))})
    return root


def test_reading_commands_exit_with_their_result_every_time(small_coded_set, tmp_path):
    # Reads that left Python-owned buffers to Arrow's threads aborted at exit (134) in about 1 run of 4.
    codes = [subprocess.run([sys.executable, "-c", _READ_ALL, str(small_coded_set)], cwd=REPO,
                            capture_output=True, text=True, timeout=120).returncode for _ in range(10)]
    for command in (["verify", str(small_coded_set)], ["get", str(small_coded_set), "c/red.png", "--out",
                                                        str(tmp_path / "red.png")]):
        codes.append(subprocess.run([sys.executable, "-m", "flows.cli", *command], cwd=REPO, capture_output=True,
                                    text=True, timeout=120).returncode)
    assert codes == [0] * len(codes)


def _generated_source(folder: Path, images: int = 4, files: int = 2, file_bytes: int = 2000) -> int:
    """Small generated photos (a gradient plus noise) and incompressible verbatim files; returns the file count."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for n in range(images):
        y, x = np.mgrid[0:24, 0:32 + 4 * n]
        pixels = (x * 6 + y * 3)[..., None] + rng.normal(0, 10, (*x.shape, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"img{n}.png")
    for n in range(files):
        (folder / f"blob{n}.bin").write_bytes(rng.bytes(file_bytes))
    return images + files


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_compress_of_a_damaged_or_empty_archive_lists_the_damage(tmp_path, damage, prefect_harness):
    import tarfile

    from flows.compress import compress_flow

    archive = tmp_path / "src.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        if damage == "truncated":
            count = _generated_source(tmp_path / "src", images=3, files=3, file_bytes=20000)
            tar.add(tmp_path / "src", arcname=".")
    if damage == "truncated":
        archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    result = compress_flow(source=str(archive), out=str(tmp_path / "set"))
    expected = "damaged or truncated" if damage == "truncated" else "holds no files"
    assert [p for p in result["problems"] if expected in p], result["problems"]
    if damage == "truncated":
        assert 0 < manifest(tmp_path / "set")["totals"]["files"] < count  # what came before the damage is stored


def test_rerun_stores_again_what_a_lost_shard_held(tmp_path, prefect_harness):
    from flows.access import verify
    from flows.compress import compress_flow

    count = _generated_source(tmp_path / "src")
    out = tmp_path / "set"
    assert compress_flow(source=str(tmp_path / "src"), out=str(out), shard_max_items=2)["problems"] == []
    lost = manifest(out)["shards"][0]
    (out / lost["name"]).unlink()
    rerun = compress_flow(source=str(tmp_path / "src"), out=str(out), shard_max_items=2)
    assert [p for p in rerun["problems"] if p.startswith(f"lost: {lost['name']}")] == rerun["problems"] != []
    assert rerun["totals"]["new_items"] == lost["rows"]
    assert verify(str(out))["problems"] == []
    ids = stored_ids(out)
    assert len(ids) == len(set(ids)) == manifest(out)["totals"]["items"] and manifest(out)["totals"]["files"] == count


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of a few hundred KB that can be grown (root only: mounting needs it)."""
    if os.geteuid() != 0:
        pytest.skip("a small tmpfs needs root to mount (the disk-full test runs as root in CI)")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=700k", "tmpfs", str(disk)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_full_disk_stops_cleanly_and_the_rerun_resumes(tmp_path, small_disk, prefect_harness):
    from flows.access import verify
    from flows.compress import compress_flow

    # The model copy takes ~500 KB of the 700 KB; a few of the 40 KB verbatim files fit after it, not all.
    count = _generated_source(tmp_path / "src", images=2, files=8, file_bytes=40000)
    out = small_disk / "set"
    full = compress_flow(source=str(tmp_path / "src"), out=str(out), shard_max_items=1)
    assert [p for p in full["problems"] if p.startswith("disk full at ")], full["problems"]
    assert not [p for p in small_disk.rglob("*") if p.name.endswith(".tmp")]
    if list(out.glob("_log/*.json")):  # what was committed before the disk filled is a valid shard set
        left = verify(str(out))["problems"]  # shards whose commit found no space are leftovers, nothing worse
        assert all(p.startswith(("missing:", "extra:")) for p in left), left
    again = compress_flow(source=str(tmp_path / "src"), out=str(out), shard_max_items=1)
    assert any(p.startswith("disk full at ") for p in again["problems"]), "still full: said so again, no traceback"
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True)
    resumed = compress_flow(source=str(tmp_path / "src"), out=str(out), shard_max_items=1)
    assert resumed["problems"] == []
    assert verify(str(out))["problems"] == []
    ids = stored_ids(out)
    assert len(ids) == len(set(ids)) == count


def test_killed_job_then_rerun_stores_each_item_once(tmp_path, prefect_harness):
    from prefect.settings import PREFECT_API_URL

    from flows.access import verify
    from flows.compress import compress_flow

    expected = make_archive(tmp_path / "src", count=12, size=40)
    out = tmp_path / "set"
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value(), SAEPRESS_DASK_WORKERS="1")
    job = subprocess.Popen(
        [sys.executable, "-c", "import sys, flows.compress as c, tasks.commit\ntasks.commit.COMMIT_SECONDS = 0\n"
         "c.compress_flow(source=sys.argv[1], out=sys.argv[2], shard_max_items=1)", str(tmp_path / "src"), str(out)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not list(out.glob("_log/*.json")) and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.05)
        running = job.poll() is None
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # the driver and its LocalCluster workers, like a killed container
        job.wait()
    assert running, f"the job ended (exit {job.returncode}) before it could be killed"
    assert (out / ".lock").exists(), "the killed job leaves its lock behind"
    result = compress_flow(source=str(tmp_path / "src"), out=str(out), shard_max_items=1)
    assert result["problems"] == []
    ids = stored_ids(out)
    assert len(ids) == len(set(ids)) == manifest(out)["totals"]["items"]
    assert manifest(out)["totals"]["files"] == len(expected)
    assert verify(str(out))["problems"] == []


@pytest.fixture
def s3(s3_env):
    import s3fs

    s3fs.S3FileSystem().mkdir("faults-archive")
    return "s3://faults-archive"


def test_shard_set_on_s3(shard_set, s3, tmp_path, prefect_harness):
    import hashlib

    import s3fs

    from flows.access import get_image, verify
    from flows.compress import compress_flow, decompress_flow
    from tasks import shards, txlog

    url = f"{s3}/set"
    workdir = shard_set / "set"  # a WORKDIR: its catalog.parquet is reused, nothing is ingested again
    result = compress_flow(source=str(workdir), out=url, shard_max_items=3)
    assert result["problems"] == []
    fs = s3fs.S3FileSystem()
    assert (manifest_generation := result["manifest_generation"]) in txlog.log_files(*shards.open_dir(url))
    assert manifest_generation >= 1 and not fs.exists(f"{url}/.lock")
    assert verify(url, decode=True)["problems"] == []
    notes = (shard_set / "src" / "notes.txt").read_bytes()
    assert get_image(url, hashlib.sha256(notes).hexdigest(), str(tmp_path / "n"))["problems"] == []
    assert (tmp_path / "n").read_bytes() == notes
    restored = decompress_flow(sharddir=url, out=str(tmp_path / "out"))
    assert restored["problems"] == [] and (tmp_path / "out" / "notes.txt").read_bytes() == notes
    with shards.lock(url, "one"), pytest.raises(shards.LockedError):
        with shards.lock(url, "two"):
            pass

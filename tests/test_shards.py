"""Shard files, garbage collection and the writer's lock (planning and accounting: tests/test_plan.py)."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import zlib

import pytest

from tasks import compress as units
from tasks import shards, txlog


def _row(item: str, data: bytes, kind: str = "passthrough") -> dict:
    return {"id": item, "paths": [f"{item}.bin"], "kind": kind, "original_bytes": len(data), "data": data,
            "compressed_bytes": len(data), "crc32": zlib.crc32(data)}


@pytest.mark.parametrize("count", [1, 70])
def test_shard_roundtrip_sorted_with_metadata(count):
    rows = [_row(f"{n:064x}", bytes([n % 256]) * (n + 1)) for n in reversed(range(count))]
    data = shards.shard_bytes(rows, {"saepress.model_fingerprint": "f" * 64, "saepress.job": "j"})
    meta = shards.shard_metadata(data)
    assert meta["saepress.shard_schema_version"] == shards.SHARD_SCHEMA_VERSION
    assert meta["saepress.model_fingerprint"] == "f" * 64
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe_file("/s/x.parquet", data)
    table = shards.read_shard(fs, "/s/x.parquet")
    assert table.column("id").to_pylist() == sorted(r["id"] for r in rows)
    wanted = rows[count // 2]["id"]
    one = shards.read_shard(fs, "/s/x.parquet", ids=[wanted]).to_pylist()
    assert [r["id"] for r in one] == [wanted] and one[0]["data"] == rows[count // 2]["data"]


def test_garbage_collection_keeps_only_listed_files(tmp_path):
    fs, root = shards.open_dir(str(tmp_path))
    for name in ("shards/a.parquet", "shards/b.parquet", "index/i.parquet"):
        shards.put_atomic(fs, f"{root}/{name}", b"x")
    (tmp_path / "manifest-00000009.json.abc.tmp").write_bytes(b"half")
    manifest = dict(txlog.empty_manifest(), shards=[{"name": "shards/a.parquet"}], index=[])
    removed = txlog.collect_garbage(fs, root, manifest)
    assert len(removed) == 3
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.parquet"]


def test_lock_is_exclusive_between_threads(tmp_path):
    wins, errors = [], []
    barrier = threading.Barrier(4)

    def contend():
        barrier.wait()
        try:
            with shards.lock(str(tmp_path), "job"):
                wins.append(1)
                barrier_hold.wait()
        except shards.LockedError as exc:
            errors.append(str(exc))
            barrier_hold.wait()

    barrier_hold = threading.Barrier(4)
    threads = [threading.Thread(target=contend) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(errors) == 3
    assert "delete" in errors[0] and shards.LOCK_NAME in errors[0]
    assert not (tmp_path / shards.LOCK_NAME).exists()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    (tmp_path / shards.LOCK_NAME).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    with shards.lock(str(tmp_path), "job") as owner:
        assert json.loads((tmp_path / shards.LOCK_NAME).read_text())["job"] == owner["job"]


def test_lock_from_another_host_is_not_taken_over(tmp_path):
    (tmp_path / shards.LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": "t", "job": "j"}))
    with pytest.raises(shards.LockedError, match="elsewhere"):
        with shards.lock(str(tmp_path), "job"):
            pass


@pytest.mark.parametrize("content", [b"", b"{\"pid\": 1", b"[]"])
def test_unreadable_lock_is_taken_over_only_after_the_grace_period(tmp_path, content):
    import os
    import time

    lock = tmp_path / shards.LOCK_NAME
    lock.write_bytes(content)  # what a full disk at creation, or a crash, leaves behind
    with pytest.raises(shards.LockedError, match="unreadable lock"):
        with shards.lock(str(tmp_path), "job"):
            pass
    assert lock.read_bytes() == content
    old = time.time() - shards.LOCK_GRACE_SECONDS - 1
    os.utime(lock, (old, old))
    with shards.lock(str(tmp_path), "job") as owner:
        assert json.loads(lock.read_text())["token"] == owner["token"]
    assert not lock.exists() and not list(tmp_path.iterdir())


def test_lock_of_a_reused_pid_is_taken_over(tmp_path):
    import os
    import socket

    # Our own pid, but a process start time that is not ours: the owner is gone and its pid was reused.
    held = {"pid": os.getpid(), "started": 1.0, "host": socket.gethostname(), "job": "old"}
    (tmp_path / shards.LOCK_NAME).write_text(json.dumps(held))
    with shards.lock(str(tmp_path), "job") as owner:
        assert json.loads((tmp_path / shards.LOCK_NAME).read_text())["token"] == owner["token"]


def test_release_leaves_a_lock_that_is_no_longer_ours(tmp_path):
    lock = tmp_path / shards.LOCK_NAME
    with shards.lock(str(tmp_path), "job"):
        lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "job": "other"}))  # someone else's now
    assert json.loads(lock.read_text())["job"] == "other"


@pytest.mark.parametrize("path, expected", [
    ("a/photo.jpg", "a/photo.jpg.png"), ("scan.PNG", "scan.PNG"), ("x", "x.png")])
def test_output_name_for_coded_items(path, expected):
    assert units.output_name(path, "coded") == expected
    assert units.output_name(path, "passthrough") == path


@pytest.fixture(scope="module")
def coded_shard(tmp_path_factory):
    """A shard set with one coded image and one verbatim file, written with the shipped model."""
    import numpy as np
    from PIL import Image

    from sae_model import Codec

    codec = Codec.pretrained()
    root = tmp_path_factory.mktemp("coded")
    codec.save(root / "models" / codec.fingerprint)
    pixels = np.random.default_rng(0).integers(0, 255, (16, 24, 3), dtype=np.uint8)
    stream = codec.encode(Image.fromarray(pixels), quality=50)
    coded = dict(_row("c" * 64, stream, "coded"), width=24, height=16, mode="RGB", format="PNG",
                 model_fingerprint=codec.fingerprint)
    data = shards.shard_bytes([coded, _row(hashlib.sha256(b"verbatim").hexdigest(), b"verbatim")], {})
    fs, base = shards.open_dir(str(root))
    shards.put_atomic(fs, f"{base}/shards/s.parquet", data)
    return root, {"name": "shards/s.parquet", "rows": 2, "bytes": len(data), "sha256": shards.sha256_hex(data)}


class _Payload:
    """Unpickling this would create a file: a model folder must never get as far as unpickling it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _model_folder(root, fingerprint: str, weights: bytes, config: bytes = b"{}"):
    folder = root / "models" / fingerprint
    folder.mkdir(parents=True)
    (folder / "weights.pt").write_bytes(weights)
    (folder / "config.json").write_bytes(config)


@pytest.mark.parametrize("damage", ["pickle payload", "truncated, fingerprint of the original",
                                    "truncated, own fingerprint", "config not JSON", "weights deleted"])
def test_damaged_model_folder_is_a_clear_error_and_never_unpickled(coded_shard, tmp_path, damage):
    import pickle

    root, _ = coded_shard
    (good,) = [p.name for p in (root / "models").iterdir()]
    weights = (root / "models" / good / "weights.pt").read_bytes()
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(_Payload(marker))
    fingerprint, data, config = {
        "pickle payload": (hashlib.sha256(payload).hexdigest(), payload, b"{}"),
        "truncated, fingerprint of the original": (good, weights[:1000], b"{}"),
        "truncated, own fingerprint": (hashlib.sha256(weights[:1000]).hexdigest(), weights[:1000], b"{}"),
        "config not JSON": (good, weights, b"{not json"),
        "weights deleted": (good, None, b"{}"),
    }[damage]
    _model_folder(tmp_path, fingerprint, data or b"", config)
    if data is None:
        (tmp_path / "models" / fingerprint / "weights.pt").unlink()
    with pytest.raises(units.ItemError, match="cannot be decoded|does not hold a saepress model"):
        units.load_codec(str(tmp_path), fingerprint)
    assert not marker.exists()


@pytest.mark.parametrize("long_name", ["x" * 255, "d/" + "é" * 127 + ".jpg", "y" * 300 + "/z.tif"])
def test_each_output_path_is_written_alone_and_long_names_are_shortened(coded_shard, tmp_path, long_name):
    root, entry = coded_shard
    out = tmp_path / "out"
    out.mkdir()
    (out / "blocked").write_bytes(b"a file where a folder is needed")
    targets = {"c" * 64: [long_name, "ok/short.jpg", "blocked/image.jpg"],
               hashlib.sha256(b"verbatim").hexdigest(): ["v" * 255]}
    result = units.decompress_shard(str(root), entry["name"], targets, str(out), entry)
    assert result["written"] == 3, result  # the long name (shortened), the short one, and a legal 255-byte name
    assert [p for p in result["problems"] if "blocked/image.jpg" in p and "left out" in p] == result["problems"]
    assert (out / ("v" * 255)).read_bytes() == b"verbatim"
    assert list(result["renamed"]) == [long_name]
    written = out / result["renamed"][long_name]
    assert written.read_bytes() == (out / "ok/short.jpg.png").read_bytes()
    assert all(len(part.encode()) <= 255 for part in written.relative_to(out).parts)
    assert written.suffix == ".png" and "~" in str(written.relative_to(out))
    assert not [p for p in out.rglob("*.tmp")]


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../x", "C:/x", "..", ""])
def test_unsafe_paths_are_refused(path):
    with pytest.raises(units.ItemError):
        units.safe_relative(path)

"""The index: parts per commit, compaction into two sorted files, and lookups that read one row group."""
from __future__ import annotations

import hashlib

import pyarrow.parquet as pq
import pytest

from flows.access import compact, get_image, verify
from tasks import shards, txlog
from test_access import write_set


def _commit_part(root, rows: list[dict]) -> dict:
    """One more commit whose index part maps paths to items already stored (as a job's duplicates do)."""
    fs, base = shards.open_dir(str(root))
    state = txlog.read_manifest(fs, base)
    data = shards.index_bytes(rows)
    name = f"index/later-{state['generation']:04d}.parquet"
    shards.put_atomic(fs, f"{base}/{name}", data)
    state["index"] = state["index"] + [{"name": name, "rows": len(rows), "bytes": len(data),
                                        "sha256": shards.sha256_hex(data)}]
    return txlog.write_manifest(fs, base, state)


FILES = {f"dir/{n:05d}.bin": f"content {n}".encode() for n in range(40)}


@pytest.fixture
def parted(tmp_path):
    """A set of 40 verbatim files whose ``dir/00001.bin`` a later commit points at the content of 00002."""
    write_set(tmp_path, FILES)
    fs, root = shards.open_dir(str(tmp_path))
    index = shards.read_index(fs, root, txlog.read_manifest(fs, root))
    _, shard, kind = index["dir/00002.bin"]
    _commit_part(tmp_path, [{"path": "dir/00001.bin", "id": hashlib.sha256(FILES["dir/00002.bin"]).hexdigest(),
                             "shard": shard, "kind": kind}])
    return tmp_path


def test_compaction_keeps_the_later_row_for_a_path_and_every_lookup(parted, tmp_path):
    fs, root = shards.open_dir(str(parted))
    before = shards.read_index(fs, root, txlog.read_manifest(fs, root))
    result = compact(str(parted))
    state = txlog.read_manifest(fs, root)
    assert result["problems"] == [] and [e["sorted"] for e in state["index"]] == ["path", "id"]
    assert shards.read_index(fs, root, state) == before
    assert get_image(str(parted), "dir/00001.bin", str(tmp_path / "one"))["problems"] == []
    assert (tmp_path / "one").read_bytes() == FILES["dir/00002.bin"]
    # The content that path held first is history, still found by its id, and not an "extra" item.
    first = hashlib.sha256(FILES["dir/00001.bin"]).hexdigest()
    assert get_image(str(parted), first[:10], str(tmp_path / "old"))["problems"] == []
    assert (tmp_path / "old").read_bytes() == FILES["dir/00001.bin"]
    assert verify(str(parted))["problems"] == []
    assert "compacted already" in compact(str(parted))["report"][0]


def test_a_part_committed_after_compaction_wins_over_the_compacted_rows(parted, tmp_path):
    compact(str(parted))
    fs, root = shards.open_dir(str(parted))
    _, shard, kind = shards.read_index(fs, root, txlog.read_manifest(fs, root))["dir/00003.bin"]
    _commit_part(parted, [{"path": "dir/00001.bin", "id": hashlib.sha256(FILES["dir/00003.bin"]).hexdigest(),
                           "shard": shard, "kind": kind}])
    get_image(str(parted), "dir/00001.bin", str(tmp_path / "one"))
    assert (tmp_path / "one").read_bytes() == FILES["dir/00003.bin"]
    assert verify(str(parted))["problems"] == []


def test_files_an_older_generation_lists_outlive_compaction_until_the_log_drops_it(parted):
    fs, root = shards.open_dir(str(parted))
    parts = [e["name"] for e in txlog.read_manifest(fs, root)["index"]]
    compact(str(parted))
    assert all((parted / name).exists() for name in parts)  # a reader of the generation before still finds them
    for _ in range(2 * txlog.CHECKPOINT_EVERY):
        txlog.write_manifest(fs, root, txlog.read_manifest(fs, root))
    txlog.collect_garbage(fs, root, txlog.read_manifest(fs, root))
    assert not any((parted / name).exists() for name in parts)
    assert verify(str(parted))["problems"] == []


def test_a_path_is_found_in_one_row_group_of_a_large_compacted_index(tmp_path, monkeypatch):
    rows = [{"path": f"p/{n:07d}.jpg", "id": hashlib.sha256(str(n).encode()).hexdigest(), "shard": f"shards/s{n // 512}.parquet",
             "kind": "coded"} for n in range(3 * shards.INDEX_GROUP_ROWS)]
    fs, root = shards.open_dir(str(tmp_path))
    _first_commit(fs, root, rows[0::3])
    _commit_part(tmp_path, rows[1::3])
    _commit_part(tmp_path, rows[2::3])
    state = txlog.commit_compacted(fs, root, txlog.read_manifest(fs, root))
    assert pq.ParquetFile(tmp_path / state["index"][0]["name"]).metadata.num_row_groups == 3
    read: list[int] = []
    real = pq.ParquetFile.read_row_groups
    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", lambda self, groups, **kw: read.append(len(groups))
                        or real(self, groups, **kw))
    wanted = rows[5000]
    assert shards.find_indexed(fs, root, state, "path", wanted["path"]) == \
        {wanted["path"]: (wanted["id"], wanted["shard"], "coded")}
    assert shards.find_indexed(fs, root, state, "id", wanted["id"][:12], prefix=True) == \
        {wanted["id"]: (wanted["id"], wanted["shard"], "coded")}
    assert read == [1, 1]


def _first_commit(fs, root, rows) -> None:
    data = shards.index_bytes(rows)
    shards.put_atomic(fs, f"{root}/index/first.parquet", data)
    txlog.write_manifest(fs, root, dict(txlog.empty_manifest(), index=[
        {"name": "index/first.parquet", "rows": len(rows), "bytes": len(data), "sha256": shards.sha256_hex(data)}]))


def test_get_from_an_object_store_fetches_a_footer_and_a_row_group_not_whole_files(tmp_path, monkeypatch):
    from fsspec.implementations.memory import MemoryFileSystem

    url = "memory://get-ranges"
    files = {f"p/{n:06d}.bin": f"file {n}".encode() * 8 for n in range(3 * shards.INDEX_GROUP_ROWS)}
    write_set(url, files, per_shard=len(files))  # one large shard of many row groups
    compact(url)
    fetched: dict[str, int] = {}
    real = MemoryFileSystem.cat_file
    monkeypatch.setattr(MemoryFileSystem, "cat_file", lambda self, path, start=None, end=None, **kw: fetched.update(
        {path: fetched.get(path, 0) + len(data := real(self, path, start, end, **kw))}) or data)
    assert get_image(url, "p/005000.bin", str(tmp_path / "one"))["problems"] == []
    assert (tmp_path / "one").read_bytes() == files["p/005000.bin"]
    fs, root = shards.open_dir(url)
    for path, size in fetched.items():
        if path.endswith(".parquet"):
            assert size < fs.size(path) / 2, (path, size, fs.size(path))
    MemoryFileSystem.store.clear()

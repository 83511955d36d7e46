"""Ingest: the probe on every kind of good and bad file, and the flow on real tar, zip, folder and memory sources."""
from __future__ import annotations

import hashlib
import os

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fixtures_archives import (TEST_MAX_BYTES, Case, _noise, bomb_png, common_cases, encode, expected_rows,
                               folder_extras, local_cluster, rgb_jpeg, rgb_png, tar_extras, write_folder, write_fs,
                               write_tar, write_zip, zip_extras)
from PIL import Image

from flows.ingest import ingest_flow
from tasks.errors import ConfigError
from tasks import store
from tasks.ingest import BATCH_FILES, CATALOG_SCHEMA, catalog_url, make_batches, probe_file
from tasks.sources import open_source

CASES = common_cases()
READABLE = [case for case in CASES if case.read]


def without_reason(rows):
    """Rows without the free-text reason and the source's version stamp (a file's mtime)."""
    return [{k: v for k, v in row.items() if k not in ("reason", "modified")} for row in rows]


@pytest.mark.parametrize("case", READABLE, ids=[case.path for case in READABLE])
def test_probe_classifies_each_file(case):
    row = probe_file(case.path, case.data, max_pixels=200_000_000)
    expected = expected_rows([case])[0]
    # Duplicates are decided across rows, later; alone each file is ok or rejected.
    expected.update(status="ok" if case.status == "duplicate" else case.status, duplicate_of=None)
    assert without_reason([row]) == [expected]
    assert (row["reason"] is None) == (row["status"] == "ok")


def test_pixel_limit_is_checked_on_the_header_and_configurable():
    data = bomb_png(3000, 2000)  # 6 MP claimed, a few bytes of pixels
    row = probe_file("p.png", data, max_pixels=5_000_000)
    assert (row["status"], row["error"], row["width"], row["height"]) == ("rejected", "too_large", 3000, 2000)
    assert "5000000" in row["reason"]
    # Under a higher limit the header passes and decoding finds the missing pixels.
    assert probe_file("p.png", data, max_pixels=7_000_000)["error"] in ("truncated", "corrupt")


def test_batches_group_consecutive_files_by_count_and_bytes():
    members = [(f"f{i}", 10) for i in range(2 * BATCH_FILES + 2)] + [("big", 63 * 2**20), ("big2", 63 * 2**20)]
    batches = make_batches(members)
    assert [len(b) for b in batches] == [BATCH_FILES, BATCH_FILES, 3, 1]
    assert [m for b in batches for m in b] == members


# Flow tests share clusters passed by address. memory:// lives in one process, so those use in-process workers.

@pytest.fixture(scope="module")
def process_cluster():
    with local_cluster(workers=1) as address:
        yield address


@pytest.fixture(scope="module")
def thread_cluster():
    with local_cluster(processes=False) as address:
        yield address


def _memory_source(name: str, cases) -> str:
    fs = fsspec.filesystem("memory")
    root = f"/ingest-test/{name}"
    if fs.exists(root):
        fs.rm(root, recursive=True)
    return "memory://" + write_fs(fs, root, cases)


def _build(kind: str, tmp_path):
    """(source URL, cases in source order) for one kind of source."""
    if kind == "folder":
        cases = sorted(CASES + folder_extras(tmp_path / "outside"), key=lambda c: c.path)
        return str(write_folder(tmp_path / "src", cases)), cases
    if kind == "tar.gz":
        cases = CASES + tar_extras()
        return str(write_tar(tmp_path / "src.tar.gz", cases)), cases
    if kind == "zip":
        cases = CASES + zip_extras()
        return str(write_zip(tmp_path / "src.zip", cases)), cases
    raise ValueError(kind)


def _catalog(out) -> pa.Table:
    """The catalog of a WORKDIR, a local folder or a URL."""
    return store.read_table(catalog_url(store.location(str(out))))


def _check_catalog(result, out, url, cases):
    table = _catalog(out)
    assert table.schema.remove_metadata() == CATALOG_SCHEMA
    assert table.schema.metadata[b"saepress.catalog_version"] == b"1"
    assert table.schema.metadata[b"saepress.source"] == url.encode()
    rows = table.to_pylist()
    assert without_reason(rows) == expected_rows(cases)
    assert all(row["modified"] for row in rows if row["size"])
    for row in rows:  # a one-line reason for every rejection, none otherwise
        assert (row["status"] == "rejected") == bool(row["reason"]) and "\n" not in (row["reason"] or "")
    counts = {s: sum(1 for c in cases if c.status == s) for s in ("ok", "duplicate", "rejected")}
    assert {k: result[k] for k in counts} == counts
    assert result["seen"] == len(cases) == sum(counts.values())
    rejected = [row for row in rows if row["status"] == "rejected"]
    assert result["problems"] == [f"rejected {r['path']}: {r['error']}: {r['reason']}" for r in rejected]
    assert f"ok {counts['ok']} + duplicate {counts['duplicate']} + rejected {counts['rejected']} = {len(cases)}" \
        in result["report"]


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("kind", ["folder", "tar.gz", "zip"])
def test_ingest_catalogues_every_file_exactly(tmp_path, kind, process_cluster):
    url, cases = _build(kind, tmp_path)
    out = tmp_path / "work"
    result = ingest_flow(url, str(out), max_bytes=TEST_MAX_BYTES, dask_address=process_cluster)
    _check_catalog(result, out, url, cases)
    assert result["new"] == len(cases)


@pytest.mark.usefixtures("prefect_harness")
def test_ingest_is_idempotent_and_grows_with_the_workdir_on_an_object_store(thread_cluster):
    url = _memory_source("grow", CASES)
    out = "memory://ingest-test/work-grow"  # an fsspec URL: the catalog is PUT whole, read back from there
    if fsspec.filesystem("memory").exists(out):
        fsspec.filesystem("memory").rm(out, recursive=True)
    first = ingest_flow(url, out, max_bytes=TEST_MAX_BYTES, dask_address=thread_cluster)
    _check_catalog(first, out, url, CASES)
    assert first["catalog"] == f"{out}/catalog.parquet"
    before = _catalog(out).to_pylist()

    again = ingest_flow(url, out, max_bytes=TEST_MAX_BYTES, dask_address=thread_cluster)
    assert again["new"] == 0
    assert _catalog(out).to_pylist() == before

    # New files, one of which sorts before every old one and copies an old ok image: old rows keep their roles.
    added = [Case("0_first_copy_of_photo.jpg", CASES[0].data, "duplicate"),
             Case("z/new.jpg", rgb_jpeg(50, 40, 77), "ok", info={})]
    fs = fsspec.filesystem("memory")
    write_fs(fs, url.removeprefix("memory://"), added)
    grown = ingest_flow(url, out, max_bytes=TEST_MAX_BYTES, dask_address=thread_cluster)
    rows = _catalog(out).to_pylist()
    assert grown["new"] == 2 and grown["seen"] == len(CASES) + 2
    assert rows[: len(before)] == before
    assert [(r["path"], r["status"], r["duplicate_of"]) for r in rows[len(before):]] == [
        ("0_first_copy_of_photo.jpg", "duplicate", "a/photo.jpg"), ("z/new.jpg", "ok", None)]

    # A file that changed size is probed again; a file that disappeared leaves the catalog.
    fs.pipe_file(url.removeprefix("memory://") + "/z/new.jpg", rgb_png(30, 30, 5))
    fs.rm(url.removeprefix("memory://") + "/bad/notes.jpg")
    changed = ingest_flow(url, out, max_bytes=TEST_MAX_BYTES, dask_address=thread_cluster)
    assert changed["new"] == 1 and changed["seen"] == len(CASES) + 1
    assert "(new 0, changed 1, already catalogued 16, gone since last run 1)" in changed["report"][1]
    row = [r for r in _catalog(out).to_pylist() if r["path"] == "z/new.jpg"][0]
    assert row["format"] == "PNG"


def _same_size_versions(tmp_path, kind: str, version: int) -> str:
    """A source whose ``a/img.bmp`` holds different pixels (same byte count) in each version; the rest stays."""
    cases = [Case("a/img.bmp", encode(Image.fromarray(_noise(24, 16, 100 + version)), "BMP"), "ok"),
             Case("b/keep.jpg", rgb_jpeg(30, 20, 3), "ok")]
    if kind == "folder":
        url = write_folder(tmp_path / "src", cases if version == 0 else cases[:1])
        os.utime(url / "a/img.bmp", ns=(version * 10**9, version * 10**9))  # a copy that keeps old mtimes
        return str(url)
    if kind == "tar.gz":  # write_tar gives every member the same fixed mtime, like a reproducible build
        return str(write_tar(tmp_path / "src.tar.gz", cases))
    if kind == "zip":
        return str(write_zip(tmp_path / "src.zip", cases))
    return _memory_source("rewritten", cases) if version == 0 else \
        "memory://" + write_fs(fsspec.filesystem("memory"), "/ingest-test/rewritten", cases[:1])


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("kind", ["folder", "tar.gz", "zip", "memory"])
def test_a_file_rewritten_with_the_same_size_is_catalogued_again(tmp_path, kind, request):
    cluster = request.getfixturevalue("thread_cluster" if kind == "memory" else "process_cluster")
    out = tmp_path / "work"
    url = _same_size_versions(tmp_path, kind, 0)
    ingest_flow(url, str(out), dask_address=cluster)
    before = {r["path"]: r for r in pq.read_table(out / "catalog.parquet").to_pylist()}
    assert _same_size_versions(tmp_path, kind, 1) == url
    again = ingest_flow(url, str(out), dask_address=cluster)
    after = {r["path"]: r for r in pq.read_table(out / "catalog.parquet").to_pylist()}
    assert after["a/img.bmp"]["size"] == before["a/img.bmp"]["size"]
    data = open_source(url).read("a/img.bmp")
    assert after["a/img.bmp"]["id"] == hashlib.sha256(data).hexdigest() != before["a/img.bmp"]["id"]
    assert after["b/keep.jpg"] == before["b/keep.jpg"]
    assert "changed 1, already catalogued 1," in again["report"][1]


@pytest.mark.usefixtures("prefect_harness")
def test_ingest_refuses_another_source_or_a_missing_one(tmp_path, thread_cluster):
    out = tmp_path / "work"
    ingest_flow(_memory_source("one", CASES[:2]), str(out), dask_address=thread_cluster)
    with pytest.raises(ConfigError, match="already catalogues"):
        ingest_flow(_memory_source("two", CASES[:2]), str(out), dask_address=thread_cluster)
    with pytest.raises(ConfigError, match="does not exist"):
        ingest_flow(str(tmp_path / "missing"), str(tmp_path / "other"), dask_address=thread_cluster)

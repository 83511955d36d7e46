"""WORKDIR files anywhere: a local folder or any fsspec URL (``s3://bucket/work/archive``).

A WORKDIR holds::

    catalog.parquet              written by ingest on the driver (tasks.ingest)
    patches/part-NNNNN.parquet   written by extract's Dask workers (tasks.patches), read by train (tasks.patch_stream)

Every file is written whole with tasks.shards.put_atomic (temp name + rename on a local disk, one PUT on an object
store), so a reader on any machine sees the old file or the new one. A WORKDIR travels between processes as a
string every one of them can open: the URL as given, or an absolute local path. With a URL, the driver and the
Dask workers need no shared POSIX disk: each reads and writes the store itself.
"""
from __future__ import annotations

import hashlib
import posixpath
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from tasks import shards


def location(workdir: str) -> str:
    """The WORKDIR as any process names it: a URL without its trailing slash, a local path made absolute."""
    if "://" in workdir and not workdir.startswith("file://"):
        return workdir.rstrip("/")
    return str(Path(workdir.removeprefix("file://")).expanduser().resolve())


def join(base: str, *names: str) -> str:
    return "/".join([base.rstrip("/"), *names])


def basename(url: str) -> str:
    return posixpath.basename(url.rstrip("/"))


def _fs(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    return fsspec.core.url_to_fs(url)


def exists(url: str) -> bool:
    fs, path = _fs(url)
    return fs.isfile(path)


def parquet_file(url: str) -> pq.ParquetFile:
    """A Parquet file read in place: on an object store only the footer and the column chunks asked for are
    fetched (ranged GETs), so a row group can be streamed without downloading the whole part."""
    fs, path = _fs(url)
    return pq.ParquetFile(path, filesystem=fs)


def read_table(url: str, columns: list[str] | None = None) -> pa.Table:
    fs, path = _fs(url)
    return pq.read_table(path, columns=columns, filesystem=fs)


def write_table(url: str, table: pa.Table) -> None:
    """Write ``table`` as Parquet at ``url`` all at once (the whole file is built in memory first)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    fs, path = _fs(url)
    shards.put_atomic(fs, path, sink.getvalue().to_pybytes())


def size(url: str) -> int:
    fs, path = _fs(url)
    return int(fs.size(path))


def sha256(url: str) -> str:
    digest = hashlib.sha256()
    fs, path = _fs(url)
    with fs.open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def list_names(folder: str) -> list[str]:
    """The names of the files in ``folder`` (none when it does not exist), as listed now: Dask workers may have
    written there since this process last looked, so no cached listing is used."""
    fs, path = _fs(folder)
    fs.invalidate_cache(path)
    if not fs.isdir(path):
        return []
    return sorted(basename(entry) for entry in fs.ls(path, detail=False))


def remove(url: str) -> None:
    fs, path = _fs(url)
    fs.rm_file(path)

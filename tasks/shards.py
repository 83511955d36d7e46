"""The shard set on disk: shard and index files, the committed state (its log: tasks/txlog.py) and the writer's lock.

A SHARDDIR (a local folder or any fsspec URL such as ``s3://bucket/archive``) holds::

    catalog.parquet                     the catalog ingest wrote (absent when compress read an existing WORKDIR)
    models/<fingerprint>/               weights + config.json of every model a row was coded with
    shards/<job>-<batch>-<rand>.parquet the stored items (immutable once written)
    index/<job>-<seq>.parquet           path -> item -> shard, one file per commit (immutable)
    _log/<generation>[.checkpoint].json the committed state (the manifest) as a log of commits and checkpoints;
                                        the highest generation is the current one (tasks/txlog.py)
    manifest-<generation>.json          version 1: the whole state per generation; version 2: a marker only
    report.html                         the set's page for people (tasks/report.py), rewritten by every job
    .lock                               present while a job writes (owner pid, start time, host, job, token)
    .lock.takeover                      present for a moment while a job replaces a stale lock

Shard file (``SHARD_SCHEMA_VERSION`` 3): Parquet, one row per stored item, rows sorted by ``id`` in small row groups
so that a reader can fetch one item through the row-group statistics without reading the rest of the payload.
Version 1 files lack ``frames`` .. ``text``, versions 1 and 2 lack ``exact_sha256`` (and the exact kinds); missing
columns read as if they were null (still images, nothing noted).

    id                 string    sha256 hex of the original file's bytes (the image id)
    paths              list<str> every original path (relative to the source root) known when the item was stored
    kind               string    "coded" (data is a codec bitstream, or a frame container for frames > 1),
                                 "passthrough" (data is the file verbatim), "jpeg-exact" (data: JPEG XL transcoding
                                 that rebuilds the JPEG byte for byte, sae_model/jpeg_exact.py) or "lossless"
                                 (data: pixel-exact item, sae_model/lossless.py)
    width, height      int32?    pixels of the stored image (after EXIF orientation was applied); null for passthrough
    mode               string?   Pillow mode of the original image; null for passthrough
    format             string?   Pillow format of the original (JPEG, PNG, ...); null when not an image
    original_bytes     int64     size of the original file
    data               large_binary  the bitstream or the verbatim bytes
    compressed_bytes   int64     len(data)
    crc32              int64     zlib.crc32 of data (checked by verify before anything is decoded)
    bpp                float64?  8 * compressed_bytes / (width * height * frames) for coded rows
    psnr               float64?  dB, measured by decoding right after encoding (verify-on-write); the worst frame's
    model_fingerprint  string?   the model that coded the row (a folder under models/)
    reason             string?   for passthrough: why the file was not coded; for lossless: what the rebuilt
                                 file does not carry (e.g. TIFF tags), if anything
    frames             int32?    coded rows: 1 for a still image (data is a bitstream), N > 1 for an animation or a
                                 multi-frame file (data is a frame container, tasks/frames.py: N full frames with
                                 their durations and the loop count, each frame naming its engine)
    frame_psnr         list<f64>? per-frame PSNR of a frame sequence
    conversions        list<str> what coding changed or dropped (orientation applied, 16-bit reduced, EXIF that
                                 could not be kept, ...), one line each; empty when nothing was; then the warnings
                                 raised while the file was read or coded (``warning: ...``, tasks.warned)
    text               map<str,str>? text metadata the bitstream does not carry (PNG text chunks, XMP, comments),
                                 written back as PNG iTXt chunks
    exact_sha256       string?   jpeg-exact: sha256 of the rebuilt JPEG (= id); lossless: sae_model.lossless's
                                 pixel hash (mode, size, bit depth, palette, samples); checked on every restore

Shard key-value metadata: ``saepress.shard_schema_version``, ``saepress.bitstream_format_version`` (empty when no
row is coded), ``saepress.model_fingerprint``, ``saepress.model_uri``, ``saepress.created`` (UTC ISO 8601) and
``saepress.job``.

Index file: columns ``path``, ``id``, ``shard`` (the shard's name relative to SHARDDIR), ``kind``. Each commit adds one part
(``index/<job>-<seq>.parquet``) with the paths it stored, including paths whose content an earlier commit already
stored (duplicates). When a path appears in several index files (its content changed), the one listed last in the
manifest wins. The end of every job (and ``saepress compact``) merges the listed files into two,
``index/compact-<generation>-<rand>-path.parquet`` and ``...-id.parquet``, listed with ``sorted``: ``path`` / ``id``:
both hold every row with ``seq`` (int64, the order in which the rows were listed, so a path's last row still wins
and the rows it replaced stay as history), sorted by (path, seq) / (id, seq), in row groups of INDEX_GROUP_ROWS
with min/max statistics on the sort key only. Readers of the whole index read the parts and the path-sorted file
in listed order; a lookup reads only the row groups whose statistics may hold the key (find_indexed).

Manifest: the committed state, a JSON object. Version 1 wrote it whole as ``manifest-<generation>.json`` at every
commit; version 2 (tasks/txlog.py) writes a small commit per generation and the whole state only in periodic
checkpoints. Either way the state holds::

    manifest_version, generation, created, shard_schema_version,
    models:   {fingerprint: {uri, version, path, bitstream_format_version}}
    shards:   [{name, rows, bytes, sha256, model_fingerprint, job}]
    index:    [{name, rows, bytes, sha256}]
    skipped:  [{path, id, reason}]                  files left out with --skip-rejected
    jobs:     [{job, started, finished, parameters, totals, mlflow_run_id}]
    totals:   {files, items, coded, passthrough, jpeg-exact, lossless, duplicate, skipped, original_bytes,
               stored_bytes, kinds: {kind: {items, original_bytes, stored_bytes}}}   (counts per kind: paths;
               kinds: stored items of every job so far)

Only files listed in the current state are part of the shard set; anything else under shards/ or index/ is left
over from an interrupted job and is deleted by the next job that holds the lock.
"""
from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import errno
import hashlib
import io
import json
import logging
import os
import posixpath
import socket
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SHARD_SCHEMA_VERSION = "3"
# Every kind of stored item; accounting counts the catalog's files per kind (plus duplicate and skipped).
KINDS = ("coded", "passthrough", "jpeg-exact", "lossless")
LOCK_NAME = ".lock"
TAKEOVER_SUFFIX = ".takeover"
# A lock that cannot be parsed is only taken over this long after it was written: a live job creates its lock
# in one step, so only a crash or a full disk mid-write leaves one (and older saepress wrote the content after).
LOCK_GRACE_SECONDS = 60
# ~32 items per row group keeps a single-item read small while the footer stays tiny.
ROW_GROUP_ITEMS = 32
# A compacted index file's row groups: one read of ~100 KB finds a path; 1 M rows make ~250 groups (a ~60 KB footer).
INDEX_GROUP_ROWS = 4096
logger = logging.getLogger(__name__)

SHARD_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("paths", pa.list_(pa.string())),
    ("kind", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("mode", pa.string()),
    ("format", pa.string()),
    ("original_bytes", pa.int64()),
    ("data", pa.large_binary()),
    ("compressed_bytes", pa.int64()),
    ("crc32", pa.int64()),
    ("bpp", pa.float64()),
    ("psnr", pa.float64()),
    ("model_fingerprint", pa.string()),
    ("reason", pa.string()),
    ("frames", pa.int32()),
    ("frame_psnr", pa.list_(pa.float64())),
    ("conversions", pa.list_(pa.string())),
    ("text", pa.map_(pa.string(), pa.string())),
    ("exact_sha256", pa.string()),
])
INDEX_SCHEMA = pa.schema([("path", pa.string()), ("id", pa.string()), ("shard", pa.string()), ("kind", pa.string())])


def shown_kinds(counts: dict) -> list[str]:
    """The stored kinds a summary lists: coded and passthrough always, the exact kinds when some item is one."""
    return [kind for kind in KINDS if counts.get(kind) or kind in ("coded", "passthrough")]


def accounted(counts: dict) -> int:
    """The catalog files a count (or manifest totals) found a place for: stored as any kind, duplicate or skipped."""
    return sum(counts.get(kind, 0) for kind in KINDS) + counts["skipped"] + counts["duplicate"]


class ShardDirError(Exception):
    """The shard set is unreadable or inconsistent; the message says what is wrong."""


class LockedError(Exception):
    """Another job holds the SHARDDIR lock."""


class DiskFull(OSError):
    """No space left where ``filename`` was being written (nothing half-written is left there)."""

    def __init__(self, path: str):
        super().__init__(errno.ENOSPC, "disk full", path)

    def __reduce__(self):  # crosses from Dask workers to the driver
        return DiskFull, (self.filename,)

    def __str__(self) -> str:
        return f"disk full at {self.filename}"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def open_dir(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and root path of a SHARDDIR URL (a plain path means the local disk)."""
    fs, root = fsspec.core.url_to_fs(url)
    return fs, root.rstrip("/")


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    return "file" in protocols or "local" in protocols


def put_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Make ``path`` hold ``data`` all at once: temp name + rename locally, a single PUT on object stores."""
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    if is_local(fs):
        # Not ``path`` + a suffix: a legal 255-byte name would make the temp name too long.
        tmp = posixpath.join(posixpath.dirname(path), f".{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # a full disk must not leave half a file behind
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise DiskFull(path) from None
            raise
    else:
        fs.pipe_file(path, data)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- shards and index files

def shard_bytes(rows: list[dict[str, Any]], metadata: dict[str, str]) -> bytes:
    """Serialise rows (dicts with SHARD_SCHEMA's columns) into one shard file's bytes, sorted by id."""
    rows = sorted((_cells(row) for row in rows), key=lambda row: row["id"])
    table = pa.Table.from_pylist(rows, schema=SHARD_SCHEMA)
    meta = {"saepress.shard_schema_version": SHARD_SCHEMA_VERSION, **metadata}
    table = table.replace_schema_metadata({k: str(v) for k, v in meta.items()})
    sink = io.BytesIO()
    # Statistics on id let a reader skip every row group but the one holding the item it wants.
    pq.write_table(table, sink, row_group_size=ROW_GROUP_ITEMS, compression="zstd",
                   write_statistics=["id"], use_dictionary=["kind", "mode", "format", "model_fingerprint"])
    return sink.getvalue()


def check_serialisable(row: dict[str, Any]) -> None:
    """Raise when one row would not fit SHARD_SCHEMA (so it is stored differently, not the whole shard lost)."""
    pa.Table.from_pylist([_cells(row)], schema=SHARD_SCHEMA)


def _cells(row: dict[str, Any]) -> dict[str, Any]:
    text = row.get("text")
    return {**row, "text": list(text.items()) if isinstance(text, dict) else text}


def read_shard(fs: fsspec.AbstractFileSystem, path: str, columns: list[str] | None = None,
               ids: Iterable[str] | None = None) -> pa.Table:
    """Rows of a shard (or of any Parquet file saepress wrote): optionally only some columns, or only the rows of
    some ids (only the row groups whose id statistics allow them are read; from an object store, only they and the
    footer are fetched)."""
    if is_local(fs):
        return _read_rows(path, columns, ids)
    if ids is None:
        return _read_rows(pa.BufferReader(_arrow_owned(fs.cat_file(path))), columns, ids)
    wanted = sorted(set(ids))
    names = columns or None
    table = read_row_groups(fs, path, lambda meta: [g for g in range(meta.num_row_groups)
                                                    if _may_hold(meta.row_group(g), wanted)],
                            None if names is None else list(dict.fromkeys([*names, "id"])))
    table = table.filter(pc.is_in(table["id"], value_set=pa.array(wanted, pa.string())))
    return table if names is None else table.select(names)


def read_row_groups(fs: fsspec.AbstractFileSystem, path: str, choose, columns: list[str] | None) -> pa.Table:
    """The row groups ``choose(metadata)`` picks of a Parquet file. Locally the file is read by path; from an object
    store one ranged GET fetches the footer and one each row group into an Arrow buffer of the file's size (Arrow
    reads only its own memory, see below), so a lookup in a large file costs two small GETs, not the whole file."""
    if is_local(fs):
        parquet = pq.ParquetFile(path)
        return parquet.read_row_groups(choose(parquet.metadata), columns=columns)
    size = fs.size(path)
    buffer = pa.allocate_buffer(size)
    view = memoryview(buffer).cast("B")
    tail = fs.cat_file(path, start=max(0, size - 65536), end=size)
    footer = int.from_bytes(tail[-8:-4], "little") + 8
    if footer > len(tail):
        tail = fs.cat_file(path, start=size - footer, end=size)
    view[size - len(tail):] = tail
    parquet = pq.ParquetFile(pa.BufferReader(buffer))
    groups = choose(parquet.metadata)
    for g in groups:
        group = parquet.metadata.row_group(g)
        chunks = [group.column(c) for c in range(group.num_columns)]
        start = min(c.dictionary_page_offset if c.has_dictionary_page else c.data_page_offset for c in chunks)
        end = max((c.dictionary_page_offset if c.has_dictionary_page else c.data_page_offset)
                  + c.total_compressed_size for c in chunks)
        view[start:end] = fs.cat_file(path, start=start, end=end)
    view.release()
    return parquet.read_row_groups(groups, columns=columns)


def read_shard_bytes(data: bytes, ids: Iterable[str] | None = None) -> pa.Table:
    """The same from a shard's bytes already in memory (read once: checked, then parsed)."""
    return _read_rows(pa.BufferReader(_arrow_owned(data)), None, ids)


# Arrow's reader threads can drop their last reference to an input buffer after a read has returned. When the
# buffer is a Python object (bytes that a Python file returned, or bytes handed to BufferReader), that drop takes
# the GIL, and during interpreter exit it ends the process: "terminate called without an active exception",
# exit 134, after the command printed its result (8 of 30 runs with torch loaded; reading by path 0 of 30; a
# Python file read without threads still 2 of 34). So Arrow only ever reads its own memory: a local file by path,
# anything else copied into an Arrow buffer first (a remote shard is fetched whole: one GET per shard).

def _arrow_owned(data: bytes) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    sink.write(data)
    return sink.getvalue()


def _read_rows(source, columns, ids) -> pa.Table:
    """Rows of a Parquet file (a local path or an Arrow buffer reader); only row groups that may hold ``ids``."""
    parquet = pq.ParquetFile(source)
    names = columns or parquet.schema_arrow.names
    if ids is None:
        return parquet.read(columns=names)
    wanted = sorted(set(ids))
    groups = [g for g in range(parquet.metadata.num_row_groups) if _may_hold(parquet.metadata.row_group(g), wanted)]
    table = parquet.read_row_groups(groups, columns=list(dict.fromkeys([*names, "id"])))
    return table.filter(pc.is_in(table["id"], value_set=pa.array(wanted, pa.string()))).select(names)


def _may_hold(group, ids: list[str]) -> bool:
    """Whether a row group's id statistics leave room for one of ``ids`` (sorted)."""
    column = next(group.column(c) for c in range(group.num_columns) if group.column(c).path_in_schema == "id")
    stats = column.statistics
    if stats is None or not stats.has_min_max:
        return True
    position = bisect.bisect_left(ids, stats.min)
    return position < len(ids) and ids[position] <= stats.max


def matches_entry(data: bytes, entry: dict) -> bool:
    """Whether a listed file's bytes are the ones its manifest entry describes (size and sha256)."""
    return len(data) == entry["bytes"] and sha256_hex(data) == entry["sha256"]


def shard_metadata(data: bytes) -> dict[str, str]:
    meta = pq.read_schema(pa.BufferReader(data)).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items()}


def index_bytes(entries: list[dict[str, str]]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(entries, schema=INDEX_SCHEMA), sink, compression="zstd")
    return sink.getvalue()


def _parts(manifest: dict) -> list[dict]:
    """The index files whose rows, in this order, make the index (the copy sorted by id repeats other rows)."""
    return [entry for entry in manifest["index"] if entry.get("sorted") != "id"]


def index_table(fs: fsspec.AbstractFileSystem, root: str, manifest: dict, history: bool = False) -> pa.Table:
    """The index as one Arrow table sorted by path: for each path the row that wins (the last one listed), or with
    ``history`` every row, a path's rows in the order they were listed (the last one wins; column ``seq``)."""
    tables = [read_shard(fs, f"{root}/{entry['name']}", columns=INDEX_SCHEMA.names) for entry in _parts(manifest)]
    table = pa.concat_tables([t.cast(INDEX_SCHEMA) for t in tables]) if tables else INDEX_SCHEMA.empty_table()
    table = table.append_column("seq", pa.array(range(table.num_rows), pa.int64()))
    table = table.sort_by([("path", "ascending"), ("seq", "ascending")])
    return table if history else winners(table)


def winners(history: pa.Table) -> pa.Table:
    """The row that wins for each path of a history table (index_table's ``history``), without ``seq``."""
    if history.num_rows < 2:
        return history.drop_columns("seq")
    paths = history["path"]
    last = pc.not_equal(paths.slice(0, history.num_rows - 1), paths.slice(1))
    return history.filter(pa.concat_arrays([last.combine_chunks(), pa.array([True])])).drop_columns("seq")


def index_mapping(table: pa.Table) -> dict[str, tuple[str, str, str]]:
    """path -> (id, shard, kind) of an index table."""
    return dict(zip(table["path"].to_pylist(), zip(*(table[c].to_pylist() for c in INDEX_SCHEMA.names[1:]))))


def read_index(fs: fsspec.AbstractFileSystem, root: str, manifest: dict) -> dict[str, tuple[str, str, str]]:
    """path -> (id, shard, kind) over every index file of the manifest, later files winning."""
    return index_mapping(index_table(fs, root, manifest))


def compact_index(fs: fsspec.AbstractFileSystem, root: str, manifest: dict) -> dict | None:
    """The state with its index parts merged into two files, or None when they are merged already; lock holder only.

    Both files hold every row of the index (a path's older rows too, as history) with ``seq``, the order in which
    they were listed: ``index/compact-<generation>-path.parquet`` sorted by (path, seq), ``...-id.parquet`` sorted by
    (id, seq), in row groups of INDEX_GROUP_ROWS with min/max statistics on the sort key, so a reader finds one path
    or id by reading the footer and one row group. They are written before the commit that lists them."""
    parts = _parts(manifest)
    if not parts or (len(parts) == 1 and parts[0].get("sorted") == "path"):
        return None
    table = index_table(fs, root, manifest, history=True)
    stem = f"index/compact-{manifest['generation'] + 1:08d}-{uuid.uuid4().hex[:8]}"
    entries = []
    for key in ("path", "id"):
        data = _sorted_index_bytes(table.sort_by([(key, "ascending"), ("seq", "ascending")]), key)
        name = f"{stem}-{key}.parquet"
        put_atomic(fs, f"{root}/{name}", data)
        entries.append({"name": name, "rows": table.num_rows, "bytes": len(data), "sha256": sha256_hex(data),
                        "sorted": key})
    return dict(manifest, index=entries)


def _sorted_index_bytes(table: pa.Table, key: str) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=INDEX_GROUP_ROWS, compression="zstd", write_statistics=[key],
                   use_dictionary=["shard", "kind"])
    return sink.getvalue()


def find_indexed(fs: fsspec.AbstractFileSystem, root: str, manifest: dict, key: str, value: str,
                 prefix: bool = False) -> dict[str, tuple[str, str, str]]:
    """Index rows whose ``key`` (path or id) is ``value`` (or starts with it): {path or id: (id, shard, kind)}, the
    row that wins for each. Reads only the row groups whose statistics may hold ``value``: in a compacted index the
    footer and one row group of one file, plus each part committed since."""
    other = "id" if key == "path" else "path"  # compaction writes both files: the one sorted by key has every row
    found: dict[str, tuple[str, str, str]] = {}
    for entry in (e for e in manifest["index"] if e.get("sorted") != other):  # listed order: later rows win
        table = _rows_near(fs, f"{root}/{entry['name']}", key, value, prefix)
        for row in zip(*(table[c].to_pylist() for c in INDEX_SCHEMA.names)):
            found[row[0] if key == "path" else row[1]] = row[1:]
    return found


def _rows_near(fs, path: str, key: str, value: str, prefix: bool) -> pa.Table:
    def near(metadata) -> list[int]:
        column = metadata.schema.to_arrow_schema().get_field_index(key)
        groups = []
        for g in range(metadata.num_row_groups):
            stats = metadata.row_group(g).column(column).statistics
            low, high = (stats.min, stats.max) if stats is not None and stats.has_min_max else (None, None)
            if low is None or (low[:len(value)] if prefix else low) <= value <= (high[:len(value)] if prefix else high):
                groups.append(g)
        return groups

    table = read_row_groups(fs, path, near, INDEX_SCHEMA.names)
    keys = table[key]
    return table.filter(pc.starts_with(keys, value) if prefix else pc.equal(keys, value))


# ---------------------------------------------------------------- lock
#
# The lock file holds its owner as JSON (pid, process start time, host, job, a random token). It is created with
# its whole content at once (a hard link of a written temp file locally, one conditional PUT on object stores), so
# a lock is never seen half-written by a live job. A stale lock (its process is gone) is replaced by compare-and-
# swap: whoever creates the takeover marker exclusively re-reads the lock, and only if it still holds the stale
# bytes renames a new lock over it; the others are refused. Release deletes the lock only if it is still ours.

def _pid_alive(pid: int, started: float | None = None) -> bool:
    """Whether ``pid`` runs on this host and, when ``started`` is known, is the process that started then."""
    import psutil

    try:
        process = psutil.Process(pid)
        return started is None or abs(process.create_time() - started) < 1
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _process_started() -> float:
    import psutil

    return psutil.Process().create_time()


def _create_exclusive(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> bool:
    """Create ``path`` holding ``data`` only if it does not exist; False when it does.

    Locally the data is written to a temp file that is hard-linked into place (the link fails if the name exists),
    so a full disk leaves no empty file under ``path``; object stores get one PUT with If-None-Match.
    """
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    if is_local(fs):
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
            os.link(tmp, path)
        except FileExistsError:
            return False
        except FileNotFoundError:  # the lock holder's garbage collection removed our temp file: it is held
            return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return True
    try:
        with fs.open(path, "xb") as handle:
            handle.write(data)
    except FileExistsError:
        return False
    return True


def _read_or_none(fs: fsspec.AbstractFileSystem, path: str) -> bytes | None:
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        return None


def _age_seconds(fs: fsspec.AbstractFileSystem, path: str) -> float:
    modified = fs.modified(path)
    if modified.tzinfo is None:
        modified = modified.replace(tzinfo=dt.timezone.utc)
    return (dt.datetime.now(dt.timezone.utc) - modified).total_seconds()


def _stale_reason(fs: fsspec.AbstractFileSystem, path: str, raw: bytes, url: str) -> str:
    """Why the lock holding ``raw`` may be taken over; raises LockedError when its owner may still be running."""
    try:
        held = json.loads(raw)
        if not isinstance(held, dict):
            raise ValueError("not an object")
    except ValueError:
        age = _age_seconds(fs, path)
        if age >= LOCK_GRACE_SECONDS:
            return f"unreadable for {age:.0f} s"
        raise LockedError(f"{url} has an unreadable lock {path} (being written, or left by a crash or a full disk); "
                          f"it is taken over once it is {LOCK_GRACE_SECONDS} s old: run again then") from None
    pid = held.get("pid")
    if held.get("host") == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid, held.get("started")):
        return f"its process {pid} is gone"
    raise LockedError(
        f"{url} is being written by another job (pid {held.get('pid')} on {held.get('host')} since "
        f"{held.get('since')}, job {held.get('job')}). Wait for it to finish; if that job is gone, delete "
        f"{url.rstrip('/')}/{LOCK_NAME} and run again.")


def _take_over(fs: fsspec.AbstractFileSystem, path: str, stale: bytes, data: bytes, url: str) -> None:
    """Replace the lock holding ``stale`` by ours, or raise LockedError if another job got there first."""
    marker = f"{path}{TAKEOVER_SUFFIX}"
    if not _create_exclusive(fs, marker, data):
        held = _read_or_none(fs, marker)
        if held is None:
            raise LockedError(f"another job took over the stale lock of {url} just now; try again")
        # A marker outlives its job only if that job died inside the takeover itself.
        reason = _stale_reason(fs, marker, held, url)
        fs.rm_file(marker)
        raise LockedError(f"{url}: removed an abandoned takeover marker ({reason}); run again")
    try:
        if _read_or_none(fs, path) != stale:
            raise LockedError(f"another job took over the stale lock of {url} just now; try again")
        put_atomic(fs, path, data)
    finally:
        fs.rm_file(marker)


@contextlib.contextmanager
def lock(url: str, job: str) -> Iterator[dict]:
    """Hold SHARDDIR's writer lock for the block.

    A lock left by a dead process on this host is taken over (pid and process start time are checked), an
    unreadable one once it is ``LOCK_GRACE_SECONDS`` old; a lock from another host cannot be checked, so the error
    names the file to delete once the user knows that job is gone.
    """
    fs, root = open_dir(url)
    path = f"{root}/{LOCK_NAME}"
    owner = {"pid": os.getpid(), "started": _process_started(), "host": socket.gethostname(), "since": now(),
             "job": job, "token": uuid.uuid4().hex}
    data = json.dumps(owner).encode()
    while not _create_exclusive(fs, path, data):
        held = _read_or_none(fs, path)
        if held is None:
            continue  # released between our two looks: create again
        reason = _stale_reason(fs, path, held, url)
        _take_over(fs, path, held, data, url)
        logger.warning("took over the lock of %s (%s)", url, reason)
        break
    try:
        yield owner
    finally:
        if _read_or_none(fs, path) == data:
            fs.rm_file(path)
        else:
            logger.warning("the lock of %s is no longer ours at release; left it in place", url)

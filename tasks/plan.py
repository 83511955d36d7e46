"""What a job will do, decided on the driver: the catalog it works from, the batches of a compress job, where every
catalogued file ended up, and which stored item a decompress writes to which paths.

Planning is Arrow work, never a Python object per catalog row: the catalog is read in Parquet batches, each one
anti-joined on path against the stored index (rows whose path already maps to their id are stored); what is left
is grouped by id, deduplicated against the stored ids, and cut into shard-sized batches that become Python dicts
only when one is submitted. The plan keeps a few Arrow columns per new item (~120 bytes); planning itself peaks at
~1.2 KB of RSS per catalogued row (bench/scale.py driver: 1.4 GB at 10^6); its intermediate tables are freed
before any batch is submitted.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks import shards, store
from tasks.compress import output_name
from tasks.errors import ConfigError
from tasks.ingest import CATALOG_SCHEMA

CATALOG = "catalog.parquet"
# The catalog columns planning reads; nothing else of a row is ever loaded on the driver.
CATALOG_COLUMNS = ["id", "path", "size", "status", "format", "error", "reason"]
_PLANNED = pa.schema([CATALOG_SCHEMA.field(column) for column in CATALOG_COLUMNS])
# Catalog rows per Parquet batch read: big enough for Arrow's joins to pay, small next to any catalog worth it.
READ_ROWS = 65_536
# What a batch item carries to the worker (tasks.compress.compress_batch), in the order it is planned.
ITEM_COLUMNS = ["id", "paths", "status", "format", "reason", "size"]


def find_catalog(source: str) -> str | None:
    """The catalog URL when ``source`` is a WORKDIR (or its catalog file) rather than an archive to ingest."""
    if any(ch in source for ch in "*?["):
        return None
    fs, path = fsspec.core.url_to_fs(source)
    if path.endswith(CATALOG) and fs.isfile(path):
        return source
    if fs.isdir(path) and fs.isfile(f"{path.rstrip('/')}/{CATALOG}"):
        return f"{source.rstrip('/')}/{CATALOG}"
    return None


def open_catalog(url: str) -> tuple[pq.ParquetFile, str]:
    """The catalog as a Parquet file read in place, in batches (tasks.store.parquet_file: on an object store only
    the footer and the column chunks asked for are fetched), and the source URL ingest recorded."""
    catalog = store.parquet_file(url)
    meta = {k.decode(): v.decode() for k, v in (catalog.schema_arrow.metadata or {}).items()}
    if "saepress.source" not in meta:
        raise ConfigError(f"{url} has no saepress.source metadata: it was not written by `saepress ingest`")
    return catalog, meta["saepress.source"]


def catalog_batches(catalog: pq.ParquetFile) -> Iterator[pa.RecordBatch]:
    """The planning columns of the catalog, READ_ROWS rows at a time."""
    return catalog.iter_batches(batch_size=READ_ROWS, columns=CATALOG_COLUMNS)


def drop_lost(fs, root: str, manifest: dict) -> tuple[dict, list[str]]:
    """The manifest without the shard and index files it lists that are gone or have another size, and one
    problem line per file dropped: planning from it stores their items again instead of trusting the index.

    Sizes come from one folder listing each (no file is read); a same-size corruption is verify's to find.
    """
    kept = {}
    problems = []
    for part in ("shards", "index"):
        folder = f"{root}/{part}"
        sizes = {info["name"].rstrip("/"): info["size"]
                 for info in (fs.ls(folder, detail=True) if fs.exists(folder) else [])}
        kept[part] = []
        for entry in manifest[part]:
            size = sizes.get(f"{root}/{entry['name']}")
            if size == entry["bytes"]:
                kept[part].append(entry)
            else:
                what = "missing" if size is None else f"{size} bytes, not {entry['bytes']}"
                problems.append(f"lost: {entry['name']} ({entry['rows']} rows) is {what}; its items are stored again "
                                "from the source")
    return dict(manifest, **kept), problems


def stored_index(fs, root: str, manifest: dict) -> pa.Table:
    """The index (shards.index_table: path, id, shard, kind, one row per path, the last listed winning) restricted
    to shards the manifest lists: what is stored."""
    table = shards.index_table(fs, root, manifest)
    listed = pa.array([entry["name"] for entry in manifest["shards"]], pa.string())
    return table.filter(pc.is_in(table["shard"], value_set=listed))


@dataclass
class Plan:
    """A compress job's work: the new items cut into batches, the index entries of new paths whose content is
    stored already (duplicates), the files it leaves out (skipped), and ``counts``: where the catalog's files are
    once the duplicates are committed and before any batch is (what each stored batch adds: tasks.commit.tally)."""

    items: pa.Table              # ITEM_COLUMNS, in storing order
    starts: np.ndarray           # row of items where each batch begins
    duplicates: pa.Table         # shards.INDEX_SCHEMA rows
    skipped: list[dict]          # {path, id, reason}
    counts: dict[str, int]       # files, every kind of shards.KINDS, duplicate, skipped

    def __len__(self) -> int:
        return len(self.starts)

    def batches(self) -> Iterator[list[dict]]:
        """Each batch's items as dicts (tasks.compress.compress_batch's ``items``), made as they are asked for."""
        ends = [*self.starts[1:].tolist(), self.items.num_rows]
        for start, end in zip(self.starts.tolist(), ends):
            yield self.items.slice(start, end - start).to_pylist()

    def total(self) -> tuple[int, int]:
        """Items to store and their originals' bytes."""
        return self.items.num_rows, int(pc.sum(self.items["size"]).as_py() or 0)


def plan_job(catalog: Iterable[pa.RecordBatch], index: pa.Table, skip_rejected: bool, max_items: int,
             max_bytes: int) -> Plan:
    """Split the catalog rows not yet stored into shard-sized batches.

    A row is stored already when the index maps its path to its id. New paths whose content is stored already
    become index entries only (duplicates); rejected files are listed as skipped with ``skip_rejected``; rows
    without an id (ingest could not read them) are always listed as skipped. Paths of the same new content become
    one item, described by its first row that is not a catalog duplicate. Shards are bounded by item count and by
    the originals' bytes (coded items shrink, passthrough items do not); a single larger file gets a shard alone.
    """
    counts = {"files": 0, **dict.fromkeys(shards.KINDS, 0), "duplicate": 0, "skipped": 0}
    unread, stored, new = [], [], []
    for batch in catalog:
        rows = pa.Table.from_batches([batch]).select(CATALOG_COLUMNS).cast(_PLANNED)
        rows = rows.append_column("_n", pa.array(np.arange(counts["files"], counts["files"] + rows.num_rows)))
        counts["files"] += rows.num_rows
        unread.append(rows.filter(pc.is_null(rows["id"])).select(["path", "reason"]))
        rows = rows.filter(pc.is_valid(rows["id"]))
        at = pc.index_in(rows["path"], value_set=index["path"])
        here = pc.fill_null(pc.equal(rows["id"], index["id"].take(at)), False)
        stored.append(pa.table({"id": rows["id"], "kind": index["kind"].take(at)}).filter(here))
        new.append(rows.filter(pc.invert(here)))
    skipped = [{"path": row["path"], "id": None, "reason": row["reason"] or "unreadable"}
               for part in unread for row in part.to_pylist()]
    # Per stored content its first path counts as its kind and every other one as a duplicate.
    stored = pa.concat_tables(stored) if stored else pa.table({"id": pa.array([], pa.string()),
                                                               "kind": pa.array([], pa.string())})
    kinds = stored.group_by("id", use_threads=False).aggregate([("kind", "first")])
    _add_kinds(counts, kinds["kind_first"])
    counts["duplicate"] += stored.num_rows - kinds.num_rows
    groups = _group_by_id(new)
    # New paths of content stored under another path: index entries only.
    on_id = index.group_by("id", use_threads=False).aggregate([("shard", "last"), ("kind", "last")])
    at = pc.index_in(groups["id"], value_set=on_id["id"])
    known = pc.is_valid(at)
    duplicates = groups.filter(known).select(["id", "paths"])
    at = at.filter(known)
    # Content none of whose catalogued paths was stored yet: one of its new paths counts as its kind.
    first = pc.invert(pc.is_in(duplicates["id"], value_set=kinds["id"]))
    _add_kinds(counts, on_id["kind_last"].take(at.filter(first)))
    counts["duplicate"] += (pc.sum(pc.list_value_length(duplicates["paths"])).as_py() or 0) - \
        (pc.sum(first.cast(pa.int64())).as_py() or 0)
    owner = pc.list_parent_indices(duplicates["paths"])
    duplicates = pa.table({"path": pc.list_flatten(duplicates["paths"]), "id": duplicates["id"].take(owner),
                           "shard": on_id["shard_last"].take(at).take(owner),
                           "kind": on_id["kind_last"].take(at).take(owner)}, schema=shards.INDEX_SCHEMA)
    groups = groups.filter(pc.invert(known))
    if skip_rejected:
        rejected = pc.equal(groups["status"], "rejected")
        skipped += [{"path": path, "id": row["id"], "reason": row["reason"] or row["error"]}
                    for row in groups.filter(rejected).select(["id", "paths", "reason", "error"]).to_pylist()
                    for path in row["paths"]]
        groups = groups.filter(pc.invert(rejected))
    counts["skipped"] = len(skipped)
    items = groups.select(ITEM_COLUMNS)
    items = items.set_column(ITEM_COLUMNS.index("size"), "size", pc.fill_null(items["size"], 0))
    return Plan(items, _batch_starts(items["size"].to_numpy(), max_items, max_bytes), duplicates, skipped, counts)


def split_failed(items: list[dict], error: BaseException) -> list[list[dict]]:
    """What to store when a batch failed every retry: its halves, so that the items that can be stored are; a
    single item that still fails, verbatim (its reason says why); nothing once a verbatim attempt failed too
    (a batch-level cause such as storage down: the items stay unstored, reported, and the next job retries)."""
    if len(items) > 1:
        return [items[: len(items) // 2], items[len(items) // 2:]]
    (item,) = items
    if item["status"] == "rejected":
        return []
    text = str(error).strip().splitlines()
    why = f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__
    return [[{**item, "status": "rejected", "reason": f"stored verbatim: coding it failed its batch every time ({why})"}]]


def _add_kinds(counts: dict[str, int], kinds: pa.Array) -> None:
    for kind, n in zip(*pc.value_counts(kinds).flatten()):
        counts[kind.as_py()] += n.as_py()


def _group_by_id(parts: list[pa.Table]) -> pa.Table:
    """One row per id of the not-yet-stored catalog rows, in the order ids first appear: its paths, and the columns
    of its first row that is not a catalog duplicate (else of its first row)."""
    described = ["size", "status", "format", "error", "reason"]
    if not parts:
        return pa.table({"id": pa.array([], pa.string()), "paths": pa.array([], pa.list_(pa.string())),
                         "size": pa.array([], pa.int64()), **{c: pa.array([], pa.string()) for c in described[1:]}})
    rows = pa.concat_tables(parts)
    # That row first, then the others in catalog order (the worker reads an item from its first path).
    rows = rows.append_column("_dup", pc.fill_null(pc.equal(rows["status"], "duplicate"), False))
    rows = rows.sort_by([("_dup", "ascending"), ("_n", "ascending")])
    groups = rows.group_by("id", use_threads=False).aggregate(
        [("path", "list"), ("_n", "min"), *((c, "first") for c in described)])
    groups = groups.sort_by("_n_min").select(["id", "path_list", *(f"{c}_first" for c in described)])
    return groups.rename_columns(["id", "paths", *described])


def _batch_starts(sizes: np.ndarray, max_items: int, max_bytes: int) -> np.ndarray:
    """Where each batch begins: a batch closes at ``max_items`` items or before the item that would take it past
    ``max_bytes`` (a single larger item gets a batch alone)."""
    starts, count, total = [], max_items, 0
    for n, size in enumerate(sizes.tolist()):
        if count >= max_items or total + size > max_bytes:
            starts.append(n)
            count = total = 0
        count += 1
        total += size
    return np.array(starts, dtype=np.int64)


def plan_decompress(index: dict[str, tuple[str, str, str]]) -> tuple[dict[str, dict[str, list[str]]], int, list[str]]:
    """shard -> item -> the paths to write it at; the number of files to write; one problem per path left out
    because another file would be written at the same output name."""
    targets: dict[str, dict[str, list[str]]] = {}
    names: dict[str, str] = {}
    problems: list[str] = []
    for path, (item, shard, kind) in index.items():
        name = output_name(path, kind)
        if name in names:
            problems.append(f"{path} and {names[name]} would both be written as {name}; {path} left out")
            continue
        names[name] = path
        targets.setdefault(shard, {}).setdefault(item, []).append(path)
    return targets, len(names), problems

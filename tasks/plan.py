"""What a job will do, decided on the driver: the catalog it works from, the batches of a compress job, where every
catalogued file ended up, and which stored item a decompress writes to which paths.
"""
from __future__ import annotations

import fsspec
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import shards
from tasks.compress import output_name
from tasks.errors import ConfigError

CATALOG = "catalog.parquet"


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


@task(retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def read_catalog(url: str) -> tuple[list[dict], str]:
    """Catalog rows (the columns planning needs) and the source URL ingest recorded."""
    fs, path = fsspec.core.url_to_fs(url)
    table = shards.read_shard(fs, path, columns=["id", "path", "size", "status", "format", "error", "reason"])
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if "saepress.source" not in meta:
        raise ConfigError(f"{url} has no saepress.source metadata: it was not written by `saepress ingest`")
    return table.to_pylist(), meta["saepress.source"]


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


def stored_index(fs, root: str, manifest: dict) -> dict[str, tuple[str, str, str]]:
    """The index (path -> id, shard, kind) restricted to shards the manifest lists: what is stored."""
    listed = {entry["name"] for entry in manifest["shards"]}
    return {path: entry for path, entry in shards.read_index(fs, root, manifest).items() if entry[1] in listed}


def plan_job(catalog: list[dict], index: dict[str, tuple[str, str, str]], skip_rejected: bool,
             max_items: int, max_bytes: int) -> dict:
    """Split the catalog rows not yet stored into shard-sized batches.

    A row is stored already when the index maps its path to its id. New paths whose content is stored already
    become index entries only (duplicates); rejected files are listed as skipped with ``skip_rejected``; rows
    without an id (ingest could not read them) are always listed as skipped. Shards are bounded by item count and
    by the originals' bytes (coded items shrink, passthrough items do not); a single larger file gets a shard alone.
    """
    stored = {entry[0]: entry for entry in index.values()}
    groups: dict[str, list[dict]] = {}
    skipped, duplicates = [], []
    for row in catalog:
        if row["id"] is None:
            skipped.append({"path": row["path"], "id": None, "reason": row.get("reason") or "unreadable"})
        elif index.get(row["path"], (None,))[0] != row["id"]:
            groups.setdefault(row["id"], []).append(row)
    batches: list[list[dict]] = []
    batch_bytes = 0
    for item_id, rows in groups.items():
        paths = [row["path"] for row in rows]
        if item_id in stored:
            _, shard, kind = stored[item_id]
            duplicates += [{"path": path, "id": item_id, "shard": shard, "kind": kind} for path in paths]
            continue
        first = next((row for row in rows if row["status"] != "duplicate"), rows[0])
        if first["status"] == "rejected" and skip_rejected:
            skipped += [{"path": path, "id": item_id, "reason": first.get("reason") or first.get("error")}
                        for path in paths]
            continue
        if not batches or len(batches[-1]) >= max_items or batch_bytes + (first["size"] or 0) > max_bytes:
            batches.append([])
            batch_bytes = 0
        batches[-1].append({"id": item_id, "paths": paths, "status": first["status"], "format": first.get("format"),
                            "reason": first.get("reason"), "size": first["size"] or 0})
        batch_bytes += first["size"] or 0
    return {"batches": batches, "duplicates": duplicates, "skipped": skipped}


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


def account(catalog: list[dict], index: dict[str, tuple[str, str, str]], skipped: list[dict]) -> dict:
    """Where every catalog file ended up: the stored kinds (shards.KINDS) + skipped + duplicate must equal the
    catalog (shards.accounted)."""
    counts = {"files": len(catalog), **dict.fromkeys(shards.KINDS, 0), "duplicate": 0, "skipped": 0}
    skipped_paths = {entry["path"] for entry in skipped}
    seen: set[str] = set()
    missing = []
    for row in catalog:
        entry = index.get(row["path"])
        if entry is not None and entry[0] == row["id"]:
            counts["duplicate" if entry[0] in seen else entry[2]] += 1
            seen.add(entry[0])
        elif row["path"] in skipped_paths:
            counts["skipped"] += 1
        else:
            missing.append(row["path"])
    return {**counts, "missing": missing}


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

"""`saepress get`, `verify` and `compact`: work on a shard set in this process (no Prefect server, no Dask)."""
from __future__ import annotations

from typing import Any

from tasks import compress as units
from tasks import defaults, shards, txlog
from tasks.access import check_shard_set, open_shard_set, read_item
from tasks.errors import ConfigError


def get_image(sharddir: str, image: str, out: str, max_pixels: int = defaults.INGEST.max_pixels) -> dict[str, Any]:
    """Write one stored file to ``out``: by image id (sha256 hex) or by any of its original paths; a coded image
    whose header declares more than ``max_pixels`` is refused (a problem, nothing written)."""
    problems: list[str] = []
    try:
        data, kind, item = read_item(sharddir, image, problems, max_pixels)
    except units.ItemError as exc:
        return {"report": [], "problems": problems + [f"{image}: {exc}"]}
    out_fs, out_path = shards.open_dir(out)
    shards.put_atomic(out_fs, out_path, data)
    what = {"coded": "PNG (decoded)", "lossless": "PNG (pixel-exact)",
            "jpeg-exact": "original bytes (JPEG rebuilt byte for byte)"}.get(kind, "original bytes")
    return {"report": [f"{image} -> {out}: {len(data)} bytes, {what}, item {item}"], "problems": problems}


def verify(sharddir: str, decode: bool = False) -> dict[str, Any]:
    """Check a shard set (tasks.access.check_shard_set); the report is one line, the problems are listed."""
    found = check_shard_set(sharddir, decode)
    problems = found["problems"]
    report = [f"verify {sharddir}: manifest generation {found['generation']}, {found['shards']} shard(s), "
              f"{found['items']} item(s), {found['paths']} path(s), {found['skipped']} skipped"
              + (f", {found['decoded']} decoded" if decode else "")
              + (": OK" if not problems else f": {len(problems)} problem(s)")]
    return {"report": report, "problems": problems}


def compact(sharddir: str) -> dict[str, Any]:
    """Merge the index parts of a shard set into its two sorted files (tasks.shards.compact_index), under the lock."""
    try:
        with shards.lock(sharddir, "compact"):
            fs, root, manifest = open_shard_set(sharddir)
            parts = len(manifest["index"])
            committed = txlog.commit_compacted(fs, root, manifest)
            txlog.collect_garbage(fs, root, committed)
    except shards.LockedError as exc:
        raise ConfigError(str(exc)) from None
    if committed is manifest:
        return {"report": [f"compact {sharddir}: the index is compacted already ({parts} file(s))"], "problems": []}
    rows = committed["index"][0]["rows"]
    return {"report": [f"compact {sharddir}: {parts} index file(s) -> 2 sorted files of {rows} row(s), "
                       f"manifest generation {committed['generation']}"], "problems": []}

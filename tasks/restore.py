"""Decompress on Dask: one call per shard writes its items back at their original paths."""
from __future__ import annotations

import json

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import compress as units
from tasks import defaults, shards
from tasks.fanout import submit_and_collect

# Written by decompress beside the files when a name had to be shortened: {original path: name written}.
RENAMED = "saepress-renamed.json"


@task(cache_policy=NO_CACHE)
def restore_files(sharddir: str, manifest: dict, targets: dict[str, dict[str, list[str]]], out: str,
                  max_pixels: int = defaults.INGEST.max_pixels) -> dict:
    """Write every item of ``targets`` (shard -> item -> paths) under ``out``; a failed shard never stops another.

    Names too long for the output filesystem are shortened (tasks.compress.write_output) and listed in RENAMED.
    """
    entries = {entry["name"]: entry for entry in manifest["shards"]}
    calls = [(sharddir, shard, items, out, entries.get(shard), max_pixels) for shard, items in targets.items()]
    keys = [f"decompress-{shard}" for shard in targets]
    # Files to write, and the stored bytes each shard call reads.
    sizes = [(sum(len(paths) for paths in items.values()), (entries.get(shard) or {}).get("bytes", 0))
             for shard, items in targets.items()]
    written, size, problems, renamed = 0, 0, [], {}
    for n, result in submit_and_collect(units.decompress_shard, calls, "decompress", sizes, unit="files",
                                            keys=keys, errors="return"):
        if isinstance(result, Exception):
            problems.append(f"{keys[n]} failed ({type(result).__name__}: {result})")
            continue
        written += result["written"]
        size += result["bytes"]
        problems += result["problems"]
        renamed.update(result["renamed"])
    if renamed:
        out_fs, out_root = shards.open_dir(out)
        mapping = f"{out_root}/{RENAMED}"
        shards.put_atomic(out_fs, mapping, json.dumps(renamed, indent=1, sort_keys=True).encode())
        problems += [f"{path}: name too long for {out}; written as {name} (all renames in {mapping})"
                     for path, name in sorted(renamed.items())]
    return {"written": written, "bytes": size, "problems": problems}

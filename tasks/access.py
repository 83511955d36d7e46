"""Reading a shard set in this process (no Prefect server, no Dask): one stored file back, or everything checked.

read_item reads the state, the index row groups that may hold the item (tasks.shards.find_indexed) and one shard (on
a local disk only the row group holding the item); check_shard_set reads everything it checks.
"""
from __future__ import annotations

import posixpath
import re
from collections import Counter
from typing import Any

from tasks import compress as units
from tasks import defaults, shards, txlog
from tasks.errors import ConfigError

_ID_PREFIX = re.compile(r"[0-9a-f]{1,64}")


def open_shard_set(sharddir: str, problems: list[str] | None = None) -> tuple[Any, str, dict]:
    """The filesystem, root and current manifest of a shard set.

    With a ``problems`` list, a newest manifest that is unreadable gives way to the newest valid generation, and
    ``problems`` says so (the reader goes on with what that generation lists; exit code 1).
    """
    fs, root = shards.open_dir(sharddir)
    try:
        return fs, root, txlog.read_manifest(fs, root, fallbacks=problems)
    except shards.ShardDirError as exc:
        raise ConfigError(str(exc)) from None


def read_item(sharddir: str, image: str, problems: list[str],
              max_pixels: int = defaults.INGEST.max_pixels) -> tuple[bytes, str, str]:
    """One stored file's bytes (decoded PNG for coded items), its kind and its id: by original path or by (a unique
    start of) its image id. Raises ConfigError when the shard set has no such file, ItemError when it is damaged;
    ``problems`` gets what was found on the way (an unreadable newest manifest)."""
    fs, root, manifest = open_shard_set(sharddir, problems)
    item, shard, kind = find_item(fs, root, manifest, image, sharddir)
    try:
        rows = shards.read_shard(fs, f"{root}/{shard}", ids=[item]).to_pylist()
        if not rows:
            raise units.ItemError(f"item {item[:12]} is missing from {shard}")
        return units.restore(sharddir, rows[0], max_pixels), kind, item
    except (OSError, ValueError) as exc:
        raise units.ItemError(str(exc)) from None


def find_item(fs, root: str, manifest: dict, image: str, sharddir: str) -> tuple[str, str, str]:
    """(id, shard, kind) of an original path, else of the one item whose id starts with ``image`` (any content the
    set stores, also one that a later job replaced at its path). Reads only the index row groups that may hold it."""
    found = shards.find_indexed(fs, root, manifest, "path", posixpath.normpath(image))
    if found:
        return next(iter(found.values()))
    if _ID_PREFIX.fullmatch(image):
        matches = shards.find_indexed(fs, root, manifest, "id", image, prefix=True)
        if len(matches) == 1:
            return next(iter(matches.values()))
        if matches:
            shown = ", ".join(sorted(item[:len(image) + 4] for item in matches)[:5])
            raise ConfigError(f"{image!r} is the start of {len(matches)} image ids in {sharddir} ({shown}"
                              f"{', ...' if len(matches) > 5 else ''}); give more digits")
    raise ConfigError(f"{image!r} is neither an original path nor (the start of) an image id in {sharddir}")


def check_shard_set(sharddir: str, decode: bool = False) -> dict[str, Any]:
    """Check the manifest, every shard's size and sha256, every row's CRC, the index; ``decode`` decodes all.

    Problems name missing shards or items, extra files, corrupt shards or rows and items stored more than once.
    """
    problems: list[str] = []
    fs, root, manifest = open_shard_set(sharddir, problems)
    listed = txlog.listed(fs, root, manifest)
    for folder in ("shards", "index"):
        if fs.exists(f"{root}/{folder}"):
            problems += [f"extra: {path} is not in the manifest (left by an interrupted job; the next compress "
                         "removes it)" for path in fs.ls(f"{root}/{folder}", detail=False) if path not in listed]
    for fingerprint, model in manifest["models"].items():
        problems += [f"{'missing' if problem.endswith('is missing') else 'corrupt'}: model {fingerprint[:12]} "
                     f"({model.get('uri')}) in {model['path']}: {problem}"
                     for problem in units.model_problems(fs, f"{root}/{model['path']}", fingerprint)]
    totals = manifest["totals"]
    if totals and shards.accounted(totals) != totals["files"]:
        problems.append(f"missing: the last job stored {sum(totals.get(k, 0) for k in shards.KINDS)} item(s), "
                        f"{totals['duplicate']} duplicate(s) and skipped {totals['skipped']} of {totals['files']} "
                        "catalogued files; run compress again")
    for entry in manifest["index"]:
        problems += _check_file(fs, root, entry)
    # Every id an index row names, winning or not: content a later job stored again at its path is history.
    indexed: set[str] = set()
    try:
        history = shards.index_table(fs, root, manifest, history=True)  # the index files are read once
        indexed.update(history["id"].to_pylist())
        index = shards.index_mapping(shards.winners(history))
    except (OSError, ValueError) as exc:
        index = {}
        problems.append(f"corrupt: an index file is unreadable ({exc})")
    wanted: dict[str, set[str]] = {}
    for path, (item, shard, kind) in index.items():
        wanted.setdefault(shard, set()).add(item)
        try:
            units.safe_relative(units.output_name(path, kind))
        except units.ItemError:
            problems.append(f"unsafe: index path {path!r} would land outside the output folder "
                            "(decompress leaves it out)")
    copies: Counter[str] = Counter()
    rows = decoded = 0
    for entry in manifest["shards"]:
        file_problems = _check_file(fs, root, entry)
        problems += file_problems
        if file_problems:
            continue
        table = shards.read_shard(fs, f"{root}/{entry['name']}")
        if table.num_rows != entry["rows"]:
            problems.append(f"corrupt: {entry['name']} has {table.num_rows} rows, the manifest says {entry['rows']}")
        present = set()
        for row in table.to_pylist():
            rows += 1
            copies[row["id"]] += 1
            present.add(row["id"])
            try:
                if row["kind"] == "coded" and row["model_fingerprint"] not in manifest["models"]:
                    raise units.ItemError(f"item {row['id'][:12]} is coded with model "
                                          f"{str(row['model_fingerprint'])[:12]}, which the manifest does not list")
                if decode:
                    units.restore(sharddir, row)
                    decoded += 1
                else:
                    units.check_row(row)
            except units.ItemError as exc:
                problems.append(f"corrupt: {entry['name']}: {exc}")
        problems += [f"missing: item {item[:12]} is indexed in {entry['name']} but not stored there"
                     for item in sorted(wanted.pop(entry["name"], set()) - present)]
    for shard, items in wanted.items():
        problems.append(f"missing: {len(items)} indexed item(s) point at {shard}, which the manifest does not list")
    problems += [f"duplicated: item {item[:12]} is stored {n} times" for item, n in copies.items() if n > 1]
    problems += [f"extra: item {item[:12]} is stored but no path maps to it" for item in sorted(set(copies) - indexed)]
    return {"problems": problems, "generation": manifest["generation"], "shards": len(manifest["shards"]),
            "items": rows, "paths": len(index), "skipped": len(manifest["skipped"]), "decoded": decoded}


def _check_file(fs, root: str, entry: dict) -> list[str]:
    """Size and sha256 of one listed file against its manifest entry."""
    path = f"{root}/{entry['name']}"
    if not fs.exists(path):
        return [f"missing: {entry['name']} ({entry['rows']} rows) is listed in the manifest but not present"]
    data = fs.cat_file(path)
    if not shards.matches_entry(data, entry):
        return [f"corrupt: {entry['name']} does not match its sha256 in the manifest"]
    return []

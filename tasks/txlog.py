"""The committed state of a shard set: a log of small commits and periodic checkpoints (manifest version 2).

The state is the dict that manifest version 1 wrote whole at every commit (its keys: tasks/shards.py). Version 2
writes each generation as one new file under SHARDDIR/_log/, either a checkpoint (the whole state) or a commit (what
changed since the previous generation), so that a commit's size does not grow with the shard set::

    _log/<generation>.checkpoint.json   the whole state: manifest_version (2), generation, created,
                                        shard_schema_version, models, shards, index, skipped, jobs, totals
    _log/<generation>.json              a commit: the same scalar keys, models and totals whole (they stay
                                        small), and for each list (shards, index, skipped, jobs)
                                        {"keep": N, "add": [...]}: the previous generation's first N entries,
                                        then ``add`` (a job's entry is updated by keeping the ones before it)
    manifest-<generation>.json          {"manifest_version": 2, "log": "_log/"}: a marker that makes a
                                        saepress from before the log refuse the set ("upgrade saepress")
                                        instead of taking it for an empty one

The state at generation G is the newest checkpoint at or before G plus the commits after it, in order; readers
take the highest generation. A commit is written when the writer knows the state of the newest generation on
disk (it committed or read it itself: the file's name and size still match) and fewer than CHECKPOINT_EVERY
generations have passed since the last checkpoint; otherwise a checkpoint. Every file is put atomically under a
name no other generation uses (temp name + rename locally, one PUT of a new object on object stores), and only the
lock holder writes, so a crash leaves either the old or the new state. After each checkpoint, log files older
than the checkpoint before it are removed: a reader that listed the log a moment ago still finds its files.

A generation that cannot be read (a damaged or missing file anywhere between its checkpoint and it) is passed
over only when the caller asks for fallbacks; the writer after such a fallback writes a checkpoint.

Manifest version 1 (``manifest-<generation>.json`` holding the whole state, no ``_log/``) still reads; the next
commit on such a set writes a checkpoint of the same state and the marker, and from then on the log is used.
"""
from __future__ import annotations

import copy
import json
import posixpath
import re

import fsspec

from tasks import shards
from tasks.shards import SHARD_SCHEMA_VERSION, ShardDirError, now, put_atomic

MANIFEST_VERSION = 2
READABLE_VERSIONS = (1, 2)
LOG = "_log"
# Readers open at most this many log files; a checkpoint (the whole state) is written this often.
CHECKPOINT_EVERY = 10
MANIFEST_PREFIX = "manifest-"
LISTS = ("shards", "index", "skipped", "jobs")
_LOG_FILE = re.compile(r"(\d{8,})(\.checkpoint)?\.json")
# The state this process last committed or read in full, per SHARDDIR: (log file path, size, state). A commit is
# a difference against it, so it is only used while that file is still the newest generation on disk.
_last: dict[str, tuple[str, int, dict]] = {}


def empty_manifest() -> dict:
    return {"manifest_version": MANIFEST_VERSION, "generation": 0, "created": None,
            "shard_schema_version": SHARD_SCHEMA_VERSION, "models": {}, "shards": [], "index": [],
            "skipped": [], "jobs": [], "totals": {}}


def log_name(generation: int, checkpoint: bool = False) -> str:
    return f"{LOG}/{generation:08d}{'.checkpoint' if checkpoint else ''}.json"


def manifest_name(generation: int) -> str:
    """A version-1 manifest's name (and the marker's)."""
    return f"{MANIFEST_PREFIX}{generation:08d}.json"


def log_files(fs: fsspec.AbstractFileSystem, root: str) -> dict[int, dict]:
    """generation -> {path, checkpoint, size} of every file in the log (one listing)."""
    folder = f"{root}/{LOG}"
    if not fs.exists(folder):
        return {}
    found: dict[int, dict] = {}
    for info in fs.ls(folder, detail=True):
        match = _LOG_FILE.fullmatch(posixpath.basename(info["name"].rstrip("/")))
        if match and not (int(match[1]) in found and found[int(match[1])]["checkpoint"]):
            found[int(match[1])] = {"path": info["name"].rstrip("/"), "checkpoint": bool(match[2]),
                                    "size": info["size"]}
    return found


def _v1_generations(fs: fsspec.AbstractFileSystem, root: str) -> list[int]:
    if not fs.exists(root):
        return []
    found = []
    for path in fs.ls(root, detail=False):
        name = posixpath.basename(path)
        stem = name[len(MANIFEST_PREFIX):-len(".json")]
        if name.startswith(MANIFEST_PREFIX) and name.endswith(".json") and stem.isdigit():
            found.append(int(stem))
    return sorted(found)


# ---------------------------------------------------------------- reading

class _Damaged(Exception):
    """One generation cannot be rebuilt; the message names the file and what is wrong with it."""


def read_manifest(fs: fsspec.AbstractFileSystem, root: str, required: bool = True,
                  fallbacks: list[str] | None = None) -> dict:
    """The current (highest-generation) state; an empty one when none exists and ``required`` is false.

    A newest generation that is unreadable or incomplete raises ShardDirError, unless ``fallbacks`` is a list:
    then the newest valid older generation is returned and ``fallbacks`` gets a line saying which generations
    were passed over (the set is usable, but not as last committed: the caller reports it as a problem).
    """
    files = log_files(fs, root)
    if not files:
        return _read_v1(fs, root, required, fallbacks)
    loaded: dict[int, dict] = {}
    passed: list[str] = []
    newest = max(files)
    for generation in sorted(files, reverse=True):
        try:
            state = _state_at(fs, files, generation, loaded)
        except _Damaged as exc:
            passed += [] if str(exc) in passed else [str(exc)]
            if fallbacks is None:
                raise ShardDirError(passed[0]) from None
            continue
        if generation != newest:
            fallbacks.append(f"{'; '.join(passed)}: using generation {generation}, the newest valid one (what "
                             "later commits stored is not listed; compress again to restore it)")
        else:
            _remember(root, files[newest], state)
        return state
    raise ShardDirError(f"{root} has no valid manifest: {'; '.join(passed)}")


def _load(fs, files: dict[int, dict], generation: int, loaded: dict[int, dict]) -> dict:
    if generation not in loaded:
        path = files[generation]["path"]
        try:
            document = json.loads(fs.cat_file(path))
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            raise _Damaged(f"{path} is unreadable ({exc})") from None
        _check_version(path, document)
        loaded[generation] = document
    return loaded[generation]


def _check_version(path: str, document: dict) -> None:
    version = document.get("manifest_version", 1)
    if version not in READABLE_VERSIONS:  # never fall back past it: a newer saepress wrote the set
        raise ShardDirError(f"{path} has manifest version {version!r}; this saepress reads versions "
                            f"{', '.join(map(str, READABLE_VERSIONS))}: upgrade saepress")


def _state_at(fs, files: dict[int, dict], generation: int, loaded: dict[int, dict]) -> dict:
    """The state at ``generation``: its checkpoint, then every commit after it."""
    start = max((g for g in files if g <= generation and files[g]["checkpoint"]), default=None)
    if start is None:
        raise _Damaged(f"{files[generation]['path']}: the log holds no checkpoint at or before generation {generation}")
    state = _load(fs, files, start, loaded)
    if damage := manifest_damage(state):
        raise _Damaged(f"{files[start]['path']} is incomplete ({damage})")
    for step in range(start + 1, generation + 1):
        if step not in files:
            raise _Damaged(f"generation {step} is missing from the log (needed for generation {generation})")
        commit = _load(fs, files, step, loaded)
        try:
            state = _apply(state, commit)
        except (KeyError, TypeError, ValueError) as exc:
            raise _Damaged(f"{files[step]['path']} is incomplete (malformed commit: {exc})") from None
        if damage := manifest_damage(state):
            raise _Damaged(f"{files[step]['path']} is incomplete ({damage})")
    return state


def _apply(state: dict, commit: dict) -> dict:
    """The state after ``commit``: each list keeps its first ``keep`` entries and appends ``add``."""
    out = {**state, **{k: commit[k] for k in ("manifest_version", "generation", "created", "shard_schema_version",
                                              "models", "totals")}}
    for key in LISTS:
        change = commit[key]
        keep, add = change["keep"], change["add"]
        if not isinstance(keep, int) or not 0 <= keep <= len(state[key]) or not isinstance(add, list):
            raise ValueError(f"{key}: keep {keep!r} of {len(state[key])} entries, add {type(add).__name__}")
        out[key] = state[key][:keep] + add
    return out


def _read_v1(fs, root: str, required: bool, fallbacks: list[str] | None) -> dict:
    """The newest valid version-1 manifest (the set has no log yet)."""
    generations = _v1_generations(fs, root)
    if not generations:
        if required:
            raise ShardDirError(f"{root} has no manifest: it is not a shard set, or no compression has committed yet")
        return empty_manifest()
    passed: list[str] = []
    for generation in reversed(generations):
        name = f"{root}/{manifest_name(generation)}"
        try:
            manifest = json.loads(fs.cat_file(name))
            if not isinstance(manifest, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            passed.append(f"{name} is unreadable ({exc})")
        else:
            _check_version(name, manifest)
            if manifest.get("manifest_version", 1) != 1:
                raise ShardDirError(f"{name} says the state is in {root}/{LOG}/, which holds no commit: the log "
                                    "was deleted or not copied with the set")
            if not (damage := manifest_damage(manifest)):
                if passed:
                    fallbacks.append(f"{'; '.join(passed)}: using generation {generation}, the newest valid "
                                     "one (what later commits stored is not listed; compress again to restore it)")
                return manifest
            passed.append(f"{name} is incomplete ({damage})")
        if fallbacks is None:
            raise ShardDirError(passed[0])
    raise ShardDirError(f"{root} has no valid manifest: {'; '.join(passed)}")


_MANIFEST_KEYS = {"manifest_version": int, "generation": int, "models": dict, "shards": list, "index": list,
                  "skipped": list, "jobs": list, "totals": dict}
_ENTRY_KEYS = {"name": str, "rows": int, "bytes": int, "sha256": str}
_ENTRY_NAME = {"shards": re.compile(r"shards/[^/\\]+\.parquet"), "index": re.compile(r"index/[^/\\]+\.parquet")}


def manifest_damage(manifest: dict) -> str | None:
    """What a state lacks (keys, types, entry names inside the set), or None when it is whole."""
    wrong = [key for key, kind in _MANIFEST_KEYS.items() if not isinstance(manifest.get(key), kind)]
    if wrong:
        return f"missing or malformed: {', '.join(wrong)}"
    for part in ("shards", "index"):
        for entry in manifest[part]:
            if not isinstance(entry, dict) or any(not isinstance(entry.get(k), t) for k, t in _ENTRY_KEYS.items()):
                return f"a {part} entry lacks {', '.join(_ENTRY_KEYS)}: {str(entry)[:80]}"
            if not _ENTRY_NAME[part].fullmatch(entry["name"]) or ".." in entry["name"]:
                return f"{part} entry {entry['name']!r} points outside {part}/"
    for fingerprint, model in manifest["models"].items():
        if not isinstance(model, dict) or model.get("path") != f"models/{fingerprint}":
            return f"model {str(fingerprint)[:12]} does not point at models/{str(fingerprint)[:12]}..."
    return None


# ---------------------------------------------------------------- writing

def write_manifest(fs: fsspec.AbstractFileSystem, root: str, manifest: dict) -> dict:
    """Commit ``manifest`` (the whole new state) as the next generation and return it; lock holder only."""
    files = log_files(fs, root)
    newest = max(files) if files else max(_v1_generations(fs, root), default=0)
    committed = dict(manifest, manifest_version=MANIFEST_VERSION, generation=newest + 1, created=now())
    base = _known(root, files.get(newest))
    last_checkpoint = max((g for g, f in files.items() if f["checkpoint"]), default=None)
    if base is None or last_checkpoint is None or committed["generation"] - last_checkpoint >= CHECKPOINT_EVERY:
        name = log_name(committed["generation"], checkpoint=True)
        data = _dumps(committed)
    else:
        name = log_name(committed["generation"])
        data = _dumps(_difference(base, committed))
    put_atomic(fs, f"{root}/{name}", data)
    if name.endswith(".checkpoint.json"):
        _mark(fs, root, committed["generation"])
        if last_checkpoint is not None:
            for generation, old in files.items():
                if generation < last_checkpoint:
                    fs.rm_file(old["path"])
    _remember(root, {"path": f"{root}/{name}", "size": len(data)}, committed)
    return committed


def _dumps(document: dict) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def _difference(base: dict, state: dict) -> dict:
    """The commit that turns ``base`` into ``state``: scalars, models and totals whole, lists as keep + add."""
    commit = {k: state[k] for k in ("manifest_version", "generation", "created", "shard_schema_version", "models",
                                    "totals")}
    for key in LISTS:
        old, new = base[key], state[key]
        keep = 0
        while keep < min(len(old), len(new)) and old[keep] == new[keep]:
            keep += 1
        commit[key] = {"keep": keep, "add": new[keep:]}
    return commit


def _known(root: str, newest: dict | None) -> dict | None:
    """The state this process last saw committed, if it is still the newest generation on disk."""
    last = _last.get(root)
    if newest is None or last is None or (last[0], last[1]) != (newest["path"].rstrip("/"), newest["size"]):
        return None
    return last[2]


def _remember(root: str, file: dict, state: dict) -> None:
    # Copies of everything a caller may go on changing (a job's entry while it runs, an entry fixed after reading):
    # a change made in place to a shared entry would compare equal to itself and never be committed. Entries are
    # flat dicts, so a shallow copy of each owns it (~25 ms per commit at 78,000 shards).
    snapshot = {**state, **{key: [dict(entry) for entry in state[key]] for key in LISTS},
                **{key: copy.deepcopy(state[key]) for key in ("jobs", "models", "totals")}}
    _last.clear()  # one set at a time is written; do not hold every set's state a long-lived process touched
    _last[root] = (file["path"].rstrip("/"), file["size"], snapshot)


def _mark(fs, root: str, generation: int) -> None:
    """Make sure the newest version-1 name holds the marker, so that an older saepress refuses the set."""
    generations = _v1_generations(fs, root)
    if generations:
        try:
            if json.loads(fs.cat_file(f"{root}/{manifest_name(generations[-1])}")).get("manifest_version") == 2:
                return
        except (OSError, ValueError, AttributeError):
            pass
    put_atomic(fs, f"{root}/{manifest_name(generation)}",
               _dumps({"manifest_version": MANIFEST_VERSION, "log": f"{LOG}/",
                       "note": "the state of this shard set is in _log/; saepress before manifest version 2 "
                               "cannot read it"}))


def commit_compacted(fs: fsspec.AbstractFileSystem, root: str, manifest: dict) -> dict:
    """The state with its index parts merged (tasks.shards.compact_index) and committed; ``manifest`` itself when
    they are merged already. Lock holder only."""
    compacted = shards.compact_index(fs, root, manifest)
    return manifest if compacted is None else write_manifest(fs, root, compacted)


# ---------------------------------------------------------------- what the log keeps

def listed(fs: fsspec.AbstractFileSystem, root: str, manifest: dict) -> set[str]:
    """Paths of the shard and index files that ``manifest`` or any generation still in the log lists: a reader of an
    older generation (one that listed the log a moment ago, or fell back past a damaged commit) still finds them."""
    names = {entry["name"] for entry in manifest["shards"] + manifest["index"]}
    for file in log_files(fs, root).values():
        try:
            document = json.loads(fs.cat_file(file["path"]))
        except (OSError, ValueError):
            continue  # a damaged file lists nothing that a reader could use
        for part in ("shards", "index"):
            entries = document.get(part) if isinstance(document, dict) else None
            entries = entries.get("add") if isinstance(entries, dict) else entries
            names.update(e["name"] for e in entries or [] if isinstance(e, dict) and isinstance(e.get("name"), str))
    return {f"{root}/{name}" for name in names}


def collect_garbage(fs: fsspec.AbstractFileSystem, root: str, manifest: dict) -> list[str]:
    """Delete shard/index/temp files that neither ``manifest`` nor the log lists (left by interrupted jobs, or no
    longer listed by any generation the log keeps); lock holder only."""
    keep = listed(fs, root, manifest)
    removed = []
    for folder in ("shards", "index"):
        if not fs.exists(f"{root}/{folder}"):
            continue
        for path in fs.ls(f"{root}/{folder}", detail=False):
            if path.rstrip("/") not in keep:
                fs.rm_file(path)
                removed.append(path)
    for folder in (root, f"{root}/{LOG}"):
        for path in fs.ls(folder, detail=False) if fs.exists(folder) else []:
            if path.endswith(".tmp"):
                fs.rm_file(path)
                removed.append(path)
    return removed

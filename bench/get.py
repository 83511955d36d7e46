"""`saepress get` on a large shard set: start-up (Python, imports) apart from the work, index parts vs compacted.

Builds one manifest-v1 set (every saepress reads it) of ``--items`` verbatim items in shards of 512, indexed by
``--parts`` index parts as a long job's commits leave them, then for each tree given times, in subprocesses and
interleaved (tree A, tree B, A, ...) so that one run's rows share the machine's load:

    python      ``python -c pass``
    imports     ``import flows.cli, flows.access`` (what `saepress get` imports before it works)
    get         `saepress get SET PATH --out FILE`, the whole command
    get: work   get_image() alone, timed inside the process (state, index, one shard row group, and the imports
                it makes on the way: torch, through ``from sae_model import CodecError``)
    get: work, codec loaded   the same with sae_model (torch) imported before the clock starts
    modules     whether torch / prefect / dask / mlflow were imported by get (for a verbatim item)

A tree that has ``saepress compact`` then compacts a copy of the set, and the get rows are measured again on it.
``python bench/get.py --tree before=/tmp/main --tree after=.``; prints a table, writes bench/results/get.json.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
SHARD_ITEMS = 512
HEAVY = ("torch", "prefect", "dask", "mlflow")


def build(out: Path, items: int, parts: int) -> str:
    """A manifest-v1 set written with Parquet directly (the format in tasks/shards.py); returns a path in it."""
    (out / "shards").mkdir(parents=True)
    (out / "index").mkdir()
    manifest = {"manifest_version": 1, "generation": 1, "created": "2026-01-01T00:00:00+00:00",
                "shard_schema_version": "3", "models": {}, "shards": [], "index": [], "skipped": [], "jobs": [],
                "totals": {"files": items, "items": items, "coded": 0, "passthrough": items, "jpeg-exact": 0,
                           "lossless": 0, "duplicate": 0, "skipped": 0, "original_bytes": 0, "stored_bytes": 0}}
    index = []
    for start in range(0, items, SHARD_ITEMS):
        rows = []
        for n in range(start, min(items, start + SHARD_ITEMS)):
            data = f"file {n}".encode()
            rows.append({"id": hashlib.sha256(data).hexdigest(), "paths": [f"photos/{n % 977:03d}/{n:08d}.jpg"],
                         "kind": "passthrough", "original_bytes": len(data), "data": data,
                         "compressed_bytes": len(data), "crc32": zlib.crc32(data), "reason": "bench"})
        rows.sort(key=lambda row: row["id"])
        name = f"shards/bench-{start // SHARD_ITEMS:06d}.parquet"
        schema = _shard_schema()
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), out / name, row_group_size=32,
                       compression="zstd", write_statistics=["id"])
        manifest["shards"].append(_entry(out, name, len(rows)))
        index += [{"path": row["paths"][0], "id": row["id"], "shard": name, "kind": "passthrough"} for row in rows]
    size = -(-len(index) // parts)
    for n in range(parts):
        name = f"index/bench-{n:05d}.parquet"
        pq.write_table(pa.Table.from_pylist(index[n * size:(n + 1) * size]), out / name, compression="zstd")
        manifest["index"].append(_entry(out, name, len(index[n * size:(n + 1) * size])))
    (out / "manifest-00000001.json").write_text(json.dumps(manifest))
    return index[len(index) // 2]["path"]


def _shard_schema() -> pa.Schema:
    sys.path.insert(0, str(ROOT))
    from tasks.shards import SHARD_SCHEMA

    return SHARD_SCHEMA


def _entry(out: Path, name: str, rows: int) -> dict:
    data = (out / name).read_bytes()
    return {"name": name, "rows": rows, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "model_fingerprint": None, "job": "bench"}


def python(tree: Path, home: Path, *args: str) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")}
    env.update(PYTHONPATH=str(tree), SAEPRESS_HOME=str(home))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=tree, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{args} in {tree} failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - start, done.stdout


WORK = """
import sys, time
if sys.argv[4] == "loaded":
    import sae_model  # noqa: F401  (torch and the codec loaded: the row times the state, index and shard reads)
from flows.access import get_image
start = time.perf_counter()
result = get_image(sys.argv[1], sys.argv[2], sys.argv[3])
print(time.perf_counter() - start)
assert not result["problems"], result
print(",".join(m for m in {heavy!r} if m in sys.modules))
"""


def measure(tree: Path, sharddir: Path, path: str, work: Path) -> dict:
    row: dict = {}
    row["python"], _ = python(tree, work, "-c", "pass")
    row["imports"], _ = python(tree, work, "-c", "import flows.cli, flows.access")
    row["get"], _ = python(tree, work, "-m", "flows.cli", "get", str(sharddir), path, "--out", str(work / "one"))
    _, out = python(tree, work, "-c", WORK.format(heavy=HEAVY), str(sharddir), path, str(work / "two"), "-")
    seconds, modules = out.splitlines()[-2:] if out.count("\n") > 1 else (out.strip(), "")
    row["get: work"], row["modules"] = float(seconds), modules or "none"
    _, out = python(tree, work, "-c", WORK.format(heavy=HEAVY), str(sharddir), path, str(work / "three"), "loaded")
    row["get: work, codec loaded"] = float(out.splitlines()[0])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", action="append", metavar="NAME=PATH", help="a source tree (repeatable)")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--parts", type=int, default=1000, help="index parts (commits) (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per tree; the median is shown")
    args = parser.parse_args()
    trees = {name: Path(path).resolve() for name, path in
             (item.split("=", 1) for item in (args.tree or [f"this={ROOT}"]))}
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="saepress-get-") as tmp:
        base = Path(tmp) / "parts"
        start = time.perf_counter()
        path = build(base, args.items, args.parts)
        print(f"built {args.items} items, {args.parts} index parts in {time.perf_counter() - start:.0f} s; get {path}")
        sets = {name: {"parts": base} for name in trees}
        for name, tree in trees.items():
            if "compact" in (tree / "flows" / "cli.py").read_text():
                copy = Path(tmp) / f"compacted-{name}"
                shutil.copytree(base, copy)
                took, _ = python(tree, Path(tmp) / "home", "-m", "flows.cli", "compact", str(copy))
                print(f"{name}: saepress compact took {took:.1f} s")
                sets[name]["compacted"] = copy
        for attempt in range(args.repeat):
            for name, tree in trees.items():
                for kind, sharddir in sets[name].items():
                    work = Path(tmp) / f"{name}-{kind}-{attempt}"
                    work.mkdir()
                    results.setdefault(f"{name} ({kind})", []).append(measure(tree, sharddir, path, work))
    columns = list(results)
    print(f"seconds, median of {args.repeat} run(s); {args.items} items, {args.parts} index parts")
    print(f"{'':24}" + "".join(f"{c:>20}" for c in columns))
    for row in ("python", "imports", "get", "get: work", "get: work, codec loaded", "modules"):
        cells = [runs[0][row] if row == "modules" else statistics.median(r[row] for r in runs)
                 for runs in results.values()]
        print(f"{row:24}" + "".join(f"{c:>20}" if isinstance(c, str) else f"{c:20.3f}" for c in cells))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "get.json").write_text(json.dumps({"trees": {k: str(v) for k, v in trees.items()}, "items": args.items,
                                              "parts": args.parts, "runs": results}, indent=1))
    print(f"wrote {out / 'get.json'}")


if __name__ == "__main__":
    main()

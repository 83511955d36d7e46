"""Scale benchmarks: how the work grows with the archive.

    python -m bench.scale tar [--counts 2000 8000]
    python -m bench.scale driver [--counts 10000 100000 1000000] [--real 10000]

``driver``: the compress driver at N catalogued items. Each N runs in fresh processes, so each peak RSS is that
one step's: the job (planning + every commit), a rerun of the finished job (planning against the whole index,
nothing left to store), and ``get`` of one path. The **dry run** (every N) writes a synthetic catalog of N rows
(1% duplicates, 0.5% rejected, 0.1% unreadable) and runs the real planner, Committer and manifest code; each batch
is stored verbatim in a real shard file by the driver itself, nothing is read or encoded, no Dask (so its RSS is the
driver's alone). The **real** run (``--real`` N, tiny generated PNGs) ingests them, then times ``compress_flow`` on a
LocalCluster of the bench's own (workers outside the measured process). Prints a Markdown table and writes
bench/results/scale.json.

``tar``: read a generated .tar.gz of N small files back in ingest's batches (tasks.ingest.BATCH_FILES files each),
as the ingest and compress workers do. "stream" is the reader before the one-pass change (each batch decompresses
the archive from its start, so the work grows with N^2); "spooled" decompresses once per process and reads each
batch from the kept copy. Both are measured in the same run on the same archive. Prints a Markdown table and writes
bench/results/scale.json.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks import shards, sources, txlog  # noqa: E402
from tasks.ingest import BATCH_FILES  # noqa: E402
from tests.fixtures_archives import Case, bench_images, write_tar  # noqa: E402


def _read_in_batches(url: str, paths: list[str], read) -> float:
    start = time.perf_counter()
    for first in range(0, len(paths), BATCH_FILES):
        got = dict(read(sources.TarSource(url), paths[first:first + BATCH_FILES]))
        assert all(isinstance(data, bytes) for data in got.values()), "a member did not come back"
    return time.perf_counter() - start


def tar_rows(counts: list[int]) -> list[dict]:
    rows = []
    for count in counts:
        with tempfile.TemporaryDirectory() as where:
            url = str(write_tar(Path(where) / "images.tar.gz",
                                [Case(path, data, "ok") for path, data in bench_images(count)]))
            paths = [member.path for member in sources.open_source(url).iter_members()]
            size = Path(url).stat().st_size
            stream = _read_in_batches(url, paths, lambda src, batch: src._stream_many(batch, None))
            spooled = _read_in_batches(url, paths, lambda src, batch: src._read_many(batch, None))
            rows.append({"files": count, "archive_bytes": size, "batches": -(-count // BATCH_FILES),
                         "stream_s": round(stream, 2), "spooled_s": round(spooled, 2)})
    return rows


def tar_table(rows: list[dict]) -> str:
    lines = ["| files | archive MB | batches | stream (before) s | spooled (after) s |",
             "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['files']} | {r['archive_bytes'] / 1e6:.1f} | {r['batches']} | {r['stream_s']:.2f} | "
              f"{r['spooled_s']:.2f} |" for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- driver: N catalogued items

DRY_MODEL = {"fingerprint": "dry-run", "uri": "none (dry run: items stored verbatim, nothing encoded)",
             "version": None}
PROBE = "d0000/img0000002.png"  # the path get and the index lookup fetch


def _content(path: str) -> bytes:
    """The synthetic file at ``path`` (the dry run stores these bytes; their sha256 is the catalogued id)."""
    return f"saepress scale bench {path}".encode()


def _path(i: int) -> str:
    return f"d{i // 1000:04d}/img{i:07d}.png"


def write_synthetic_catalog(url: Path, n: int) -> None:
    """A catalog of ``n`` rows as ingest writes it, in Parquet batches: 1% duplicates of the content of the row 50
    before, 0.5% rejected (stored verbatim), 0.1% unreadable (no id: skipped)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tasks.ingest import CATALOG_SCHEMA, CATALOG_VERSION

    schema = CATALOG_SCHEMA.with_metadata({"saepress.catalog_version": CATALOG_VERSION,
                                           "saepress.source": "synthetic://scale", "saepress.max_pixels": "0"})
    url.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(url, schema) as writer:
        for start in range(0, n, 100_000):
            rows = []
            for i in range(start, min(n, start + 100_000)):
                status, first = "ok", _path(i)
                if i % 100 == 99:
                    status, first = "duplicate", _path(i - 50)
                elif i % 200 == 17:
                    status = "rejected"
                content = _content(first)
                rows.append({"id": None if i % 1000 == 503 else hashlib.sha256(content).hexdigest(), "path": _path(i),
                             "size": len(content), "status": status, "format": "PNG", "animated": False,
                             "duplicate_of": first if status == "duplicate" else None,
                             "error": "corrupt" if status == "rejected" else None,
                             "reason": "synthetic rejected row" if status == "rejected" else None})
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))


def dry_batch(source_url: str, sharddir: str, job: str, n: int, items: list[dict], *model_rate_fidelity) -> dict:
    """tasks.compress.compress_batch without reading or encoding, run on the workers in its place: every item
    stored verbatim in a real shard file (get and verify read it as any passthrough item); the same result."""
    rows = []
    for item in items:
        data = _content(item["paths"][0])
        rows.append({"id": item["id"], "paths": item["paths"], "kind": "passthrough", "original_bytes": len(data),
                     "data": data, "compressed_bytes": len(data), "crc32": zlib.crc32(data), "reason": "dry run",
                     "conversions": []})
    name = f"shards/{job}-{n:05d}-dry.parquet"
    data = shards.shard_bytes(rows, {"saepress.job": job, "saepress.model_fingerprint": DRY_MODEL["fingerprint"]})
    fs, root = shards.open_dir(sharddir)
    shards.put_atomic(fs, f"{root}/{name}", data)
    return {"shard": {"name": name, "rows": len(rows), "bytes": len(data), "sha256": shards.sha256_hex(data),
                      "model_fingerprint": DRY_MODEL["fingerprint"], "job": job},
            "items": [{k: row.get(k) for k in ("id", "paths", "kind", "original_bytes", "compressed_bytes", "width",
                                                "height", "frames", "bpp", "psnr")} | {"warnings": []}
                      for row in rows], "problems": [], "skipped": []}


class Recorder:
    """Measurement hooks around the real functions, which still do all the work: the seconds of planning
    (drop_lost, stored_index, plan_job), and per commit its seconds and the bytes of the files it wrote (every file
    outside shards/ and models/ that is new or changed afterwards: index part, manifest, log)."""

    def __init__(self):
        from tasks import commit, plan

        self.planning_s, self.commits = 0.0, []
        for step in ("drop_lost", "stored_index", "plan_job"):
            self._wrap(plan, step, self._timed_plan)
        self._wrap(commit.Committer, "commit", self._timed_commit)

    def _wrap(self, owner, name, hook):
        real = getattr(owner, name)
        setattr(owner, name, lambda *args, **kwargs: hook(real, *args, **kwargs))

    def _timed_plan(self, real, *args, **kwargs):
        started = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            self.planning_s += time.perf_counter() - started

    def _timed_commit(self, real, committer, *args, **kwargs):
        before = _files(Path(committer.root))
        started = time.perf_counter()
        result = real(committer, *args, **kwargs)
        seconds = time.perf_counter() - started
        after = _files(Path(committer.root))
        self.commits.append((seconds, sum(size for name, size in after.items() if before.get(name) != size)))
        return result


def _files(root: Path) -> dict[str, int]:
    """Name -> size of the shard set's files outside shards/ and models/."""
    found = {}
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [d for d in subfolders if Path(folder, d) not in (root / "shards", root / "models")]
        for name in names:
            found[os.path.join(folder, name)] = os.path.getsize(os.path.join(folder, name))
    return found


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def warm_up() -> None:
    """Plan a one-row catalog: Arrow's first compute calls in a process cost ~1-2 s of set-up whatever the size
    (on the loaded 2-core VM), paid here before anything is timed."""
    import pyarrow as pa

    from tasks import plan

    row = {"id": "0", "path": "p", "size": 1, "status": "ok", "format": None, "error": None, "reason": None}
    plan.plan_job(pa.Table.from_pylist([row]).to_batches(), shards.INDEX_SCHEMA.empty_table(), False, 1, 1)


def plan_step(work: Path, out: Path, required: bool):
    """What compress does before the first batch: read the manifest, drop lost files, read the stored index and
    plan from the catalog; the manifest and the plan."""
    from tasks import defaults, plan

    fs, root = shards.open_dir(str(out))
    manifest, lost = plan.drop_lost(fs, root, txlog.read_manifest(fs, root, required=required))
    assert not lost, lost
    catalog, _ = plan.open_catalog(str(work / plan.CATALOG))
    job_plan = plan.plan_job(plan.catalog_batches(catalog), plan.stored_index(fs, root, manifest), False,
                             defaults.SHARDS.max_items, defaults.SHARDS.max_bytes)
    return manifest, job_plan


def dry_job(work: Path, out: Path, address: str) -> dict:
    """One compress job in the dry run: plan from the catalog, then tasks.commit.store_batches on the bench's
    cluster (the submission window, the progress bar, the Committer) with dry_batch as the workers' unit, and a
    commit after every batch (COMMIT_SECONDS 0) so that each batch's commit is measured."""
    import distributed

    from tasks import commit
    from tasks import compress as units

    warm_up()
    record = Recorder()
    started = time.perf_counter()
    manifest, job_plan = plan_step(work, out, required=False)
    job = {"job": "dry", "started": shards.now(), "finished": None, "parameters": {"dry_run": True}}
    committer = commit.Committer(str(out), manifest, job, DRY_MODEL, job_plan)
    commit.COMMIT_SECONDS = 0.0
    units.compress_batch = dry_batch
    with distributed.Client(address):
        stats = commit.store_batches.fn("synthetic://scale", str(out), committer, job_plan, DRY_MODEL, {}, "lossy")
    assert not stats["problems"] and shards.accounted(stats["counts"]) == stats["counts"]["files"], stats["counts"]
    compacting = time.perf_counter()  # as compress does at the end of every job
    committer.manifest = txlog.commit_compacted(committer.fs, committer.root, committer.manifest)
    return {"seconds": time.perf_counter() - started, "planning_s": record.planning_s, "batches": len(job_plan),
            "commits": record.commits, "compact_s": time.perf_counter() - compacting, "rss_mb": _peak_mb(),
            "generation": committer.manifest["generation"]}


def rerun(work: Path, out: Path) -> dict:
    """Planning again once everything is stored (what a rerun or a grown archive costs before any batch)."""
    warm_up()
    record = Recorder()
    _, job_plan = plan_step(work, out, required=True)
    assert len(job_plan) == 0 and job_plan.duplicates.num_rows == 0, "the rerun found work to do"
    return {"planning_s": record.planning_s, "rss_mb": _peak_mb()}


def get_one(out: Path, where: Path) -> dict:
    """``saepress get`` of one path in this process, twice (the first pays the codec's import), and the index
    lookup alone (manifest + tasks.access.find_item)."""
    from flows.access import get_image
    from tasks import access

    started = time.perf_counter()
    fs, root, manifest = access.open_shard_set(str(out))
    access.find_item(fs, root, manifest, PROBE, str(out))
    lookup_s = time.perf_counter() - started
    seconds = []
    for _ in range(2):
        started = time.perf_counter()
        result = get_image(str(out), PROBE, str(where / "got"))
        seconds.append(time.perf_counter() - started)
        assert not result["problems"], result["problems"]
    return {"lookup_s": lookup_s, "get_first_s": seconds[0], "get_s": seconds[1], "rss_mb": _peak_mb()}


def write_tiny_images(folder: Path, n: int) -> None:
    """``n`` distinct 16-31 px PNGs in folders of 1,000 (the real run's archive)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        side = 16 + i % 16
        pixels = (rng.integers(0, 64, (side, side, 3)) + np.linspace(0, 190, side)[None, :, None]).astype(np.uint8)
        target = folder / _path(i)
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(target)


def real_job(work: Path, out: Path, address: str) -> dict:
    """``compress_flow`` of the ingested tiny images on the bench's cluster, through the same hooks."""
    from flows.compress import compress_flow

    record = Recorder()
    started = time.perf_counter()
    result = compress_flow(source=str(work), out=str(out), dask_address=address)
    seconds = time.perf_counter() - started
    assert not result["problems"], result["problems"]
    return {"seconds": seconds, "planning_s": record.planning_s, "commits": record.commits, "rss_mb": _peak_mb(),
            "images_per_s": result["totals"]["images_per_s"], "generation": result["manifest_generation"]}


def _child(step: str, *args: str) -> dict:
    """Run one step in a fresh interpreter; its JSON result (with that process's peak RSS)."""
    done = subprocess.run([sys.executable, "-m", "bench.scale", "_step", step, *args], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode:
        raise RuntimeError(f"step {step} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _commit_figures(commits: list[tuple[float, int]]) -> dict:
    """Per-commit seconds and bytes: the median, and the mean of the first and of the last tenth (flat or not)."""
    tenth = max(1, len(commits) // 10)
    seconds, size = [c[0] for c in commits], [c[1] for c in commits]
    return {"commits": len(commits), "commit_s_median": statistics.median(seconds),
            "commit_s_first": statistics.mean(seconds[:tenth]), "commit_s_last": statistics.mean(seconds[-tenth:]),
            "commit_bytes_median": statistics.median(size), "commit_bytes_first": statistics.mean(size[:tenth]),
            "commit_bytes_last": statistics.mean(size[-tenth:])}


def driver_rows(counts: list[int], real: list[int]) -> list[dict]:
    import distributed

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.ERROR) as cluster:
        return [_driver_row(mode, n, cluster.scheduler_address)
                for mode, n in [("dry run", n) for n in counts] + [("real", n) for n in real]]


def _driver_row(mode: str, n: int, address: str) -> dict:
    """One row of the driver table: the job, a rerun, and get, each in a fresh process."""
    with tempfile.TemporaryDirectory(prefix="saepress-scale-") as where:
        where = Path(where)
        work, out = where / "work", where / "set"
        row = {"mode": mode, "items": n}
        if mode == "dry run":
            write_synthetic_catalog(work / "catalog.parquet", n)
            job = _child("dry", str(work), str(out), address)
        else:
            job = _real(where, work, out, n, address)
            row["images_per_s"] = job["images_per_s"]
        again, got = _child("rerun", str(work), str(out)), _child("get", str(out), str(where))
        row.update(job_s=job["seconds"], planning_s=job["planning_s"], job_rss_mb=job["rss_mb"],
                   compact_s=job.get("compact_s"),
                   rerun_planning_s=again["planning_s"], rerun_rss_mb=again["rss_mb"],
                   lookup_s=got["lookup_s"], get_first_s=got["get_first_s"], get_s=got["get_s"],
                   get_rss_mb=got["rss_mb"], log_files=len(list((out / txlog.LOG).glob("*.json"))),
                   index_files=len(list((out / "index").glob("*.parquet"))), **_commit_figures(job["commits"]))
    print(json.dumps(row), file=sys.stderr)
    return row


def _real(where: Path, work: Path, out: Path, n: int, address: str) -> dict:
    """Ingest ``n`` tiny images once (not measured), then the compress job in a fresh process."""
    from flows.ingest import ingest_flow
    from flows.settings import Settings

    Settings.resolve().prepare()
    write_tiny_images(where / "src", n)
    ingest_flow(source=str(where / "src"), out=str(work), dask_address=address)
    return _child("real", str(work), str(out), address)


def driver_table(rows: list[dict]) -> str:
    lines = ["| run | items | driver peak RSS MB (job / rerun / get) | planning s (job / rerun) | commits | "
             "s per commit (first / last tenth) | KB per commit (first / last tenth) | "
             "index lookup s | get s (first / again) | job s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['mode']} | {r['items']:,} | {r['job_rss_mb']:.0f} / {r['rerun_rss_mb']:.0f} / "
              f"{r['get_rss_mb']:.0f} | {r['planning_s']:.2f} / {r['rerun_planning_s']:.2f} | {r['commits']} | "
              f"{r['commit_s_first']:.3f} / {r['commit_s_last']:.3f} | {r['commit_bytes_first'] / 1e3:.1f} / "
              f"{r['commit_bytes_last'] / 1e3:.1f} | {r['lookup_s']:.3f} | "
              f"{r['get_first_s']:.2f} / {r['get_s']:.2f} | {r['job_s']:.0f}"
              + (f" ({r['images_per_s']:.0f} images/s)" if "images_per_s" in r else "") + " |" for r in rows]
    return "\n".join(lines)


def _step(step: str, args: list[str]) -> None:
    if step == "dry":
        result = dry_job(Path(args[0]), Path(args[1]), args[2])
    elif step == "rerun":
        result = rerun(Path(args[0]), Path(args[1]))
    elif step == "get":
        result = get_one(Path(args[0]), Path(args[1]))
    else:
        result = real_job(Path(args[0]), Path(args[1]), args[2])
    print(json.dumps(result))


def _save(key: str, value: dict) -> None:
    out = ROOT / "bench" / "results" / "scale.json"
    out.parent.mkdir(exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    previous[key] = {"machine": platform.processor() or platform.machine(), **value}
    out.write_text(json.dumps(previous, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    tar = commands.add_parser("tar", help="read a .tar.gz back in ingest batches, before and after the one-pass reader")
    tar.add_argument("--counts", type=int, nargs="+", default=[2000, 8000], help="files per archive (2000 8000)")
    driver = commands.add_parser("driver", help="the compress driver at N catalogued items (dry run, and real)")
    driver.add_argument("--counts", type=int, nargs="+", default=[10_000, 100_000, 1_000_000],
                        help="dry-run catalog sizes (10000 100000 1000000)")
    driver.add_argument("--real", type=int, nargs="*", default=[10_000], help="real compress of N tiny PNGs (10000)")
    step = commands.add_parser("_step")  # one measured step, run by `driver` in a fresh process
    step.add_argument("step")
    step.add_argument("args", nargs="*")
    args = parser.parse_args()
    if args.command == "_step":
        _step(args.step, args.args)
    elif args.command == "tar":
        rows = tar_rows(args.counts)
        print(tar_table(rows))
        _save("tar", {"rows": rows})
    else:
        rows = driver_rows(args.counts, args.real)
        saved = ROOT / "bench" / "results" / "scale.json"
        # Rows of earlier runs stay unless this run measured the same one (a real run can be redone alone).
        earlier = json.loads(saved.read_text()).get("driver", {}).get("rows", []) if saved.exists() else []
        rows += [r for r in earlier if (r["mode"], r["items"]) not in {(m["mode"], m["items"]) for m in rows}]
        rows.sort(key=lambda r: (r["mode"] != "real", r["items"]))
        print(driver_table(rows))
        _save("driver", {"rows": rows})


if __name__ == "__main__":
    main()

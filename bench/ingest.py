"""Ingest and patch-extraction throughput with 1 and 2 Dask workers on a generated archive.

    python -m bench.ingest [--count 2000] [--workers 1 2] [--archive tar|tar.gz|zip|folder]

Prints a Markdown table (files/s for ingest, patches/s for extract, peak resident memory per worker) and writes
bench/results/ingest.json. Timings are whole flow runs (Prefect bookkeeping included) on an already started
Prefect server and Dask cluster; a warm-up run starts the server first.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures_archives import Case, bench_images, write_folder, write_tar, write_zip  # noqa: E402


def _peak_rss(reset: bool = False) -> int:
    """This process's peak resident memory in bytes (Linux VmHWM; unlike ru_maxrss it starts afresh at exec)."""
    status = Path("/proc/self/status").read_text()
    peak = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024
    if reset:
        Path("/proc/self/clear_refs").write_text("5")  # start a new peak from the current resident size
    return peak


def _build(kind: str, count: int, where: Path) -> str:
    cases = [Case(path, data, "ok") for path, data in bench_images(count)]
    if kind == "folder":
        return str(write_folder(where / "images", cases))
    path = where / f"images.{kind}"
    return str(write_zip(path, cases) if kind == "zip" else write_tar(path, cases))


def run(count: int, workers: list[int], kind: str, patches_per_image: int) -> dict:
    import distributed

    from flows.extract import extract_flow
    from flows.ingest import ingest_flow

    results = {"count": count, "archive": kind, "patches_per_image": patches_per_image,
               "machine": f"{platform.machine()}, {os.cpu_count()} cores", "runs": []}
    with tempfile.TemporaryDirectory(prefix="saepress-bench-") as tmp:
        tmp = Path(tmp)
        source = _build(kind, count, tmp)
        results["archive_bytes"] = sum(p.stat().st_size for p in Path(source).rglob("*")) \
            if kind == "folder" else Path(source).stat().st_size
        (tmp / "warm").mkdir()
        warm = _build("tar", 8, tmp / "warm")
        for n in workers:
            with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                          dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
                    distributed.Client(cluster) as client:
                address = cluster.scheduler_address
                # Warm-up: the Prefect server, and the imports on every worker (torch comes with the codec).
                ingest_flow(warm, str(tmp / f"warm-{n}"), dask_address=address)
                extract_flow(str(tmp / f"warm-{n}"), patches_per_image=8, dask_address=address)
                baseline = max(client.run(_peak_rss, True).values())
                work = tmp / f"work-{n}"
                start = time.perf_counter()
                ingested = ingest_flow(source, str(work), dask_address=address)
                ingest_s = time.perf_counter() - start
                ingest_peak = max(client.run(_peak_rss, True).values())
                start = time.perf_counter()
                extracted = extract_flow(str(work), patches_per_image=patches_per_image, dask_address=address)
                extract_s = time.perf_counter() - start
                extract_peak = max(client.run(_peak_rss).values())
            results["runs"].append({
                "workers": n, "files": ingested["seen"], "ok": ingested["ok"], "duplicate": ingested["duplicate"],
                "ingest_s": round(ingest_s, 2), "files_per_s": round(ingested["seen"] / ingest_s, 1),
                "patches": extracted["patches"], "extract_s": round(extract_s, 2),
                "patches_per_s": round(extracted["patches"] / extract_s),
                "worker_rss_warm_mib": round(baseline / 2**20),
                "worker_peak_ingest_mib": round(ingest_peak / 2**20),
                "worker_peak_extract_mib": round(extract_peak / 2**20)})
    return results


def table(results: dict) -> str:
    lines = [f"{results['count']} generated images (64-256 px PNG/JPEG, {results['archive']}, "
             f"{results['archive_bytes'] / 2**20:.1f} MiB), {results['patches_per_image']} patches per image, "
             f"{results['machine']}",
             "",
             "| workers | ingest s | files/s | extract s | patches/s "
             "| peak RSS per worker MiB: warm / ingest / extract |",
             "|---|---|---|---|---|---|"]
    for r in results["runs"]:
        lines.append(f"| {r['workers']} | {r['ingest_s']} | {r['files_per_s']} | {r['extract_s']} | "
                     f"{r['patches_per_s']} | {r['worker_rss_warm_mib']} / {r['worker_peak_ingest_mib']} / "
                     f"{r['worker_peak_extract_mib']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--archive", choices=["tar", "tar.gz", "zip", "folder"], default="tar.gz")
    parser.add_argument("--patches-per-image", type=int, default=256)
    args = parser.parse_args()
    results = run(args.count, args.workers, args.archive, args.patches_per_image)
    out = ROOT / "bench" / "results" / "ingest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()

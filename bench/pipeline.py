"""Pipeline throughput: compress and decompress with 1 and 2 Dask workers against a single-process codec loop.

    python bench/pipeline.py [--images 2000] [--size 64] [--workers 1 2]

Generates small crops of the dev images (or of the bundled sample images), ingests them once, then times
``compress_flow`` and ``decompress_flow`` on a LocalCluster of N single-threaded worker processes, and the same
codec work (encode + verify-decode, decode + PNG) in one plain single-threaded loop. Prints a table, writes
bench/results/pipeline.json. Target: throughput with N workers >= 0.8 x N x the loop.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PHOTOS = [REPO.parent / "shared" / "data" / "dev-images", REPO / "flows" / "sample_data"]


def generate(folder: Path, count: int, size: int) -> int:
    """``count`` PNG crops of size..2*size pixels from the photos; returns total bytes."""
    from PIL import Image

    photos = [p for d in PHOTOS if d.is_dir() for p in sorted(d.glob("*.png"))]
    rng = random.Random(0)
    opened = [Image.open(p).convert("RGB") for p in photos[:8]]
    folder.mkdir(parents=True)
    for n in range(count):
        image = opened[n % len(opened)]
        w, h = rng.randint(size, 2 * size), rng.randint(size, 2 * size)
        x, y = rng.randint(0, image.width - w), rng.randint(0, image.height - h)
        sub = folder / f"{n // 500:02d}"  # a few folders, like a real archive
        sub.mkdir(exist_ok=True)
        image.crop((x, y, x + w, y + h)).save(sub / f"{n:05d}.png")
    return sum(p.stat().st_size for p in folder.rglob("*.png"))


def single_process(folder: Path, rate: dict) -> dict:
    """The codec work of compress (encode + verify-decode) and decompress (decode + PNG) in one loop."""
    import torch
    from sae_model import Codec

    from tasks import items

    # One thread, like one Dask worker (distributed pins OMP/MKL threads to 1): the loop is the per-core baseline.
    torch.set_num_threads(1)
    codec = Codec.pretrained()
    files = sorted(folder.rglob("*.png"))
    started = time.perf_counter()
    streams = [items.encode_item(codec, f.read_bytes(), rate)["data"] for f in files]
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    for stream in streams:
        items.decode_png({"data": stream, "mode": "RGB", "model_fingerprint": codec.fingerprint}, lambda _: codec)
    return {"compress_s": encode_s, "decompress_s": time.perf_counter() - started,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


@contextlib.contextmanager
def local_cluster(workers: int):
    """A LocalCluster the bench owns, so it can read the workers' peak memory before closing it."""
    import distributed

    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.ERROR) as cluster, distributed.Client(cluster) as client:
        yield cluster, client


def pipeline(workdir: Path, out: Path, restored: Path, workers: int, rate: dict) -> dict:
    from flows.compress import compress_flow, decompress_flow

    with local_cluster(workers) as (cluster, client):
        started = time.perf_counter()
        result = compress_flow(source=str(workdir), out=str(out), dask_address=cluster.scheduler_address, **rate)
        compress_s = time.perf_counter() - started
        started = time.perf_counter()
        back = decompress_flow(sharddir=str(out), out=str(restored), dask_address=cluster.scheduler_address)
        decompress_s = time.perf_counter() - started
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    assert not result["problems"] and not back["problems"], (result["problems"], back["problems"])
    return {"compress_s": compress_s, "decompress_s": decompress_s,
            "peak_rss_mb": max(peaks.values()), "stored_bytes": result["totals"]["compressed_bytes"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--quality", type=float, default=50)
    args = parser.parse_args()
    rate = {"quality": args.quality}
    from flows.ingest import ingest_flow
    from flows.settings import Settings

    with tempfile.TemporaryDirectory(prefix="saepress-bench-") as tmp:
        tmp = Path(tmp)
        Settings.resolve().prepare()
        total = generate(tmp / "src", args.images, args.size)
        with local_cluster(1) as (cluster, _):
            ingest_flow(source=str(tmp / "src"), out=str(tmp / "work"), dask_address=cluster.scheduler_address)
        rows = [("loop", 1, single_process(tmp / "src", rate))]
        for n in args.workers:
            rows.append(("dask", n, pipeline(tmp / "work", tmp / f"set{n}", tmp / f"restored{n}", n, rate)))
    loop = rows[0][2]
    print(f"{args.images} images, {total / 2**20:.1f} MB of PNG, {args.size}-{2 * args.size} px, quality {args.quality}")
    print(f"{'run':<8}{'workers':>8}{'compress img/s':>16}{'MB/s':>8}{'decompress img/s':>18}{'MB/s':>8}"
          f"{'peak MB/worker':>16}{'vs 0.8xNxloop':>15}")
    results = []
    for name, n, r in rows:
        c, d = args.images / r["compress_s"], args.images / r["decompress_s"]
        # Speed-up over the loop per worker, the worse of compress and decompress.
        ratio = min(loop["compress_s"] / r["compress_s"], loop["decompress_s"] / r["decompress_s"]) / n
        target = "-" if name == "loop" else ("met" if ratio >= 0.8 else f"{ratio:.2f}x")
        print(f"{name:<8}{n:>8}{c:>16.1f}{total / 2**20 / r['compress_s']:>8.2f}{d:>18.1f}"
              f"{total / 2**20 / r['decompress_s']:>8.2f}{r['peak_rss_mb']:>16.0f}{target:>15}")
        results.append({"run": name, "workers": n, "compress_images_per_s": c, "decompress_images_per_s": d,
                        "compress_mb_per_s": total / 2**20 / r["compress_s"],
                        "decompress_mb_per_s": total / 2**20 / r["decompress_s"], **r})
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline.json").write_text(json.dumps({"images": args.images, "bytes": total, "results": results}, indent=1))


if __name__ == "__main__":
    main()

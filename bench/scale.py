"""Scale benchmarks: how the work grows with the archive.

    python -m bench.scale tar [--counts 2000 8000]

``tar``: read a generated .tar.gz of N small files back in ingest's batches (tasks.ingest.BATCH_FILES files each),
as the ingest and compress workers do. "stream" is the reader before the one-pass change (each batch decompresses
the archive from its start, so the work grows with N^2); "spooled" decompresses once per process and reads each
batch from the kept copy. Both are measured in the same run on the same archive. Prints a Markdown table and writes
bench/results/scale.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks import sources  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    tar = commands.add_parser("tar", help="read a .tar.gz back in ingest batches, before and after the one-pass reader")
    tar.add_argument("--counts", type=int, nargs="+", default=[2000, 8000], help="files per archive (2000 8000)")
    args = parser.parse_args()
    rows = tar_rows(args.counts)
    print(tar_table(rows))
    out = ROOT / "bench" / "results" / "scale.json"
    out.parent.mkdir(exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    previous["tar"] = {"machine": platform.processor() or platform.machine(), "rows": rows}
    out.write_text(json.dumps(previous, indent=2) + "\n")


if __name__ == "__main__":
    main()

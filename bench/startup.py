"""Fixed start-up cost of every command: `saepress --help`, `compress` of a few small images (time to its first
task and in all; once on a fresh saepress home, once on a used one), `verify`, `get`, and the imports behind them.

Each tree given runs the same commands, interleaved (tree A, tree B, tree A, ...), so that the rows of one run
share the machine's load. Compare trees to measure a change: ``python bench/startup.py --tree before=/tmp/old
--tree after=.``. Prints a table and writes bench/results/startup.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMPORTS = {"import prefect": "import prefect.main", "import mlflow": "import mlflow",
           "import torch": "import torch", "import flows.compress": "import flows.compress"}


def run(tree: Path, home: Path, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")}
    env.update(PYTHONPATH=str(tree), SAEPRESS_HOME=str(home / "saepress"), PREFECT_HOME=str(home / "prefect"),
               SAEPRESS_DASK_WORKERS="1")
    start = time.time()
    done = subprocess.run([sys.executable, *args], cwd=tree, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{args} in {tree} failed ({done.returncode}): {done.stderr[-2000:]}")
    return start, done


def first_task(start: float, done: subprocess.CompletedProcess) -> float | None:
    """Seconds from the command's start to the first task its log file records."""
    log = re.search(r"^log: (.+)$", done.stdout, re.M)
    if not log:
        return None
    for line in Path(log.group(1)).read_text().splitlines():
        if "Task run" in line:
            stamp = dt.datetime.strptime(line.split(" | ")[0], "%Y-%m-%d %H:%M:%S,%f")
            return stamp.timestamp() - start
    return None


def images(folder: Path, count: int) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from hostile import photo

    folder.mkdir(parents=True)
    for n in range(count):
        photo(n, 64, 48).save(folder / f"img{n}.png")


def measure(tree: Path, work: Path, count: int) -> dict[str, float]:
    row: dict[str, float] = {}
    home = work / "home"
    cli = ("-m", "flows.cli")
    start, _ = run(tree, home, *cli, "--help")
    row["--help"] = time.time() - start
    for label, code in IMPORTS.items():
        start, _ = run(tree, home, "-c", code)
        row[label] = time.time() - start
    for label, out in (("compress (fresh home)", "set"), ("compress (used home)", "set2")):
        start, done = run(tree, home, *cli, "compress", str(work / "src"), "--out", str(work / out))
        row[label] = time.time() - start
        row[f"{label}: first task"] = first_task(start, done)
    start, _ = run(tree, home, *cli, "verify", str(work / "set"))
    row["verify"] = time.time() - start
    start, _ = run(tree, home, *cli, "get", str(work / "set"), "img0.png", "--out", str(work / "img0.png"))
    row["get"] = time.time() - start
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", action="append", metavar="NAME=PATH",
                        help="a saepress source tree to measure (repeatable; default: this one)")
    parser.add_argument("--images", type=int, default=10, help="images compressed (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per tree; the median is shown")
    args = parser.parse_args()
    trees = dict(item.split("=", 1) for item in args.tree) if args.tree else {"this": str(ROOT)}
    results: dict[str, list[dict]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(prefix="saepress-startup-") as tmp:
        images(Path(tmp) / "src", args.images)
        for attempt in range(args.repeat):
            for name, tree in trees.items():
                work = Path(tmp) / f"{name}-{attempt}"
                work.mkdir()
                (work / "src").symlink_to(Path(tmp) / "src")
                results[name].append(measure(Path(tree).resolve(), work, args.images))
    rows = list(next(iter(results.values()))[0])
    median = {name: {row: statistics.median(r[row] for r in runs if r[row] is not None)
                     if any(r[row] is not None for r in runs) else None for row in rows}
              for name, runs in results.items()}
    print(f"seconds, median of {args.repeat} run(s), {args.images} images of 64x48, one Dask worker")
    print(f"{'':34}" + "".join(f"{name:>12}" for name in trees))
    for row in rows:
        print(f"{row:34}" + "".join(f"{median[name][row]:12.1f}" if median[name][row] is not None else f"{'-':>12}"
                                    for name in trees))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "startup.json").write_text(json.dumps({"trees": trees, "images": args.images, "runs": results,
                                                  "median": median}, indent=1))
    print(f"wrote {out / 'startup.json'}")


if __name__ == "__main__":
    main()

"""Every file back from a large hostile corpus, through the command line a user runs.

    python bench/hostile.py [--count 300] [--quality 50] [--keep DIR]

Writes ``tests/hostile.py``'s corpus (at least COUNT files: broken EXIF/ICC, text chunks, every kind of animation,
multi-page TIFF, MPO, CMYK, 16-bit, truncated and corrupt files, non-images, one 384-frame FLC, bad files among
good ones in the same batches), then runs ``saepress compress``, ``verify --decode`` and ``decompress`` as
subprocesses and checks every file against the outcome it must have: coded with every frame, duration and loop
count, or passthrough with its reason and its bytes back. Prints a table and writes bench/results/hostile.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from hostile import check_decoded, check_stored, corpus, restored_name, stored_rows, write_folder  # noqa: E402


def saepress(*args: str) -> tuple[int, float, str]:
    """Runs one saepress command; returns its exit code, seconds and the last lines it printed."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-6:])
    return done.returncode, time.perf_counter() - start, tail


def check(files, sharddir: Path, back: Path) -> list[str]:
    """One line per file that did not come back as promised (empty when every file did)."""
    stored, failures = stored_rows(sharddir), []
    warnings.simplefilter("ignore")  # the originals' own broken metadata, read again here to compare
    for case in files:
        try:
            check_stored(case.path, stored[case.path], case)
            restored = (back / restored_name(case.path, case)).read_bytes()
            if case.kind == "passthrough":
                assert restored == case.data, f"{case.path}: bytes differ"
            else:
                check_decoded(case.path, case.data, restored, case)
        except (AssertionError, KeyError, FileNotFoundError) as error:
            failures.append(f"{case.path}: {type(error).__name__} {error}")
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--count", type=int, default=300, help="at least this many files")
    parser.add_argument("--quality", type=int, default=50, help="compress --quality")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        base = args.keep or Path(temp)
        files = corpus(args.count)
        source = write_folder(base / "corpus", files)
        sharddir, back = base / "set", base / "back"
        steps = {}
        for name, command in [("compress", ["compress", str(source), "--out", str(sharddir),
                                            "--quality", str(args.quality)]),
                              ("verify --decode", ["verify", str(sharddir), "--decode"]),
                              ("decompress", ["decompress", str(sharddir), "--out", str(back)])]:
            steps[name] = saepress(*command)
        failures = check(files, sharddir, back)
    kinds = Counter(case.kind for case in files)
    animations = [case for case in files if case.frames > 1]
    result = {
        "files": len(files), "bytes": sum(len(case.data) for case in files), "expected": dict(kinds),
        "animations": len(animations), "frames": sum(case.frames for case in animations),
        "steps": {name: {"exit": rc, "seconds": round(seconds, 1)} for name, (rc, seconds, _) in steps.items()},
        "files_not_back_as_promised": failures,
    }
    print(f"{result['files']} files ({result['bytes'] / 1e6:.1f} MB): expected "
          + ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
          + f"; {result['animations']} animations with {result['frames']} frames")
    print(f"\n| step | exit | seconds |\n|---|---|---|")
    for name, (rc, seconds, tail) in steps.items():
        print(f"| {name} | {rc} | {seconds:.1f} |")
    print(f"\nfiles not back as promised: {len(failures)}")
    for line in failures[:20]:
        print("  " + line)
    for name, (rc, _, tail) in steps.items():
        if rc != 0:
            print(f"\n{name} said:\n{tail}")
    out = REPO / "bench" / "results" / "hostile.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    sys.exit(1 if failures or any(rc for rc, _, _ in steps.values()) else 0)


if __name__ == "__main__":
    main()

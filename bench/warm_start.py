"""Warm start (from the shipped default) vs cold start (data-driven init) by archive size and content.

    python bench/warm_start.py [--contents documents photos] [--sizes 3 10 30 90] [--steps 40] [--batch-size 1024]

For each content and archive size: 256 patches per training image (as `saepress extract` samples them), the same
steps and batches for both starts, then the BD-rate vs JPEG of the trained model and of the shipped default on
held-out images of the same content (never trained on). Training runs in this process on one thread so that rows
measured in one run compare (the machine is shared); the time column is the training loop only.

Prints a table and writes bench/results/warm-start.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import archives  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PATCHES_PER_IMAGE = 256  # flows.extract's default


def trained(patches: np.ndarray, start: str, steps: int, batch_size: int, seed: int = 0):
    import torch

    from sae_model import Codec, TrainConfig, Trainer

    config = TrainConfig(seed=seed, steps=steps, batch_size=batch_size)
    torch.manual_seed(seed)
    trainer = Trainer(config, device="cpu")
    if start == "warm":
        trainer.initialize_from(Codec.pretrained())
    else:
        trainer.initialize(patches[:8192])
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    for _ in range(steps):
        trainer.step(patches[rng.integers(0, len(patches), batch_size)])
    return trainer.to_codec(), time.perf_counter() - started


def main() -> None:
    import torch

    from sae_model import Codec, evaluate, sample_patches

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contents", nargs="+", choices=archives.CONTENTS, default=list(archives.CONTENTS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 10, 30, 90], help="training images")
    parser.add_argument("--held-out", type=int, default=8, help="test images per content")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--dev-images", type=Path, default=archives.DEV_IMAGES)
    args = parser.parse_args()
    torch.set_num_threads(1)

    rows = []
    for content in args.contents:
        tests = archives.images(content, args.held_out, held_out=True, dev_images=args.dev_images)
        for i, image in enumerate(tests):
            image.filename = f"{content}-test-{i}"
        jpeg = evaluate.reference_curve("jpeg", tests, evaluate.QUALITIES["jpeg"])
        default = evaluate.codec_curve(Codec.pretrained(), tests, evaluate.QUALITIES["saepress"], name="default")
        pool = archives.images(content, max(args.sizes), held_out=False, dev_images=args.dev_images)
        for size in args.sizes:
            rng = np.random.default_rng(size)
            patches = np.concatenate([sample_patches(im, PATCHES_PER_IMAGE, rng) for im in pool[:size]])
            patches = patches[rng.permutation(len(patches))]
            curves = {"jpeg": jpeg, "default": default}
            seconds = {}
            for start in ("warm", "cold"):
                codec, seconds[start] = trained(patches, start, args.steps, args.batch_size)
                curves[start] = evaluate.codec_curve(codec, tests, evaluate.QUALITIES["saepress"], name=start)
            summary = evaluate.summarise(curves)["codecs"]
            row = {"content": content, "images": size, "patches": len(patches),
                   **{f"{name}_bd_rate": summary[name]["bd_rate_vs_jpeg"] for name in ("default", "warm", "cold")},
                   **{f"{name}_seconds": s for name, s in seconds.items()}}
            rows.append(row)
            print(f"{content:<10}{size:>5} images: default {row['default_bd_rate']:+.2f}%  "
                  f"warm {row['warm_bd_rate']:+.2f}%  cold {row['cold_bd_rate']:+.2f}%  "
                  f"({seconds['warm']:.0f} / {seconds['cold']:.0f} s)", flush=True)

    print(f"\nBD-rate vs JPEG on {args.held_out} held-out images per content; {args.steps} steps of "
          f"{args.batch_size} patches, 1 thread")
    print(f"{'content':<11}{'images':>7}{'default':>9}{'warm':>8}{'cold':>8}{'warm-def':>10}{'cold-def':>10}"
          f"{'train s':>9}")
    for r in rows:
        print(f"{r['content']:<11}{r['images']:>7}{r['default_bd_rate']:>+9.2f}{r['warm_bd_rate']:>+8.2f}"
              f"{r['cold_bd_rate']:>+8.2f}{r['warm_bd_rate'] - r['default_bd_rate']:>+10.2f}"
              f"{r['cold_bd_rate'] - r['default_bd_rate']:>+10.2f}{r['warm_seconds']:>9.0f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "warm-start.json"
    out.write_text(json.dumps({"steps": args.steps, "batch_size": args.batch_size, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

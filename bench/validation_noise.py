"""How much validation data a promotion decision needs: sampling noise of the validation BD-rate.

    python bench/validation_noise.py [--images DIR] [--sizes 128 256 512] [--crops 3] [--steps 40]

A training run validates on the images its split put aside, so two runs (another seed, another archive of the same
kind) see other images. This measures how much the validation BD-rate vs JPEG, and the difference between two
models on the same images (what a promotion decision compares), move with that choice:

1. random crops of each held-out image at each crop size (seeded), coded by the shipped default, by a model trained
   cold for --steps on other held-out images (a realistic weaker candidate) and by the DCT control;
2. per crop BD-rate vs JPEG (as `sae_model.evaluate.summarise` does per image);
3. bootstrap: n images drawn with replacement, one crop each, the mean of their BD-rates; the standard deviation over draws is the
   noise of a validation on n images of that size. The paired difference (candidate - default) is what decides.

Prints a table and writes bench/results/validation-noise.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
DEV_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev-images"


def crops(paths: list[Path], size: int, count: int, seed: int) -> list[tuple[str, object]]:
    from PIL import Image

    out = []
    for index, path in enumerate(paths):
        image = Image.open(path).convert("RGB")
        rng = np.random.default_rng([seed, size, index])
        for c in range(count if min(image.size) >= size else 0):
            left = int(rng.integers(0, image.width - size + 1))
            top = int(rng.integers(0, image.height - size + 1))
            crop = image.crop((left, top, left + size, top + size))
            crop.filename = f"{path.stem}#{c}"
            out.append((path.stem, crop))
    return out


def per_crop_bd_rates(codecs: dict, images: list) -> dict[str, dict[str, float]]:
    from sae_model import evaluate

    curves = {"jpeg": evaluate.reference_curve("jpeg", images, evaluate.QUALITIES["jpeg"])}
    for name, codec in codecs.items():
        curves[name] = evaluate.codec_curve(codec, images, evaluate.QUALITIES["saepress"], name=name)
    summary = evaluate.summarise(curves)
    return {name: summary["codecs"][name]["bd_rate_vs_jpeg_per_image"] for name in codecs}


def bootstrap(values: dict[str, list[float]], n: int, draws: int, rng: np.random.Generator) -> float:
    """Std of the mean over n images drawn at random, one random crop of each (values: image -> its crops' numbers)."""
    names = sorted(values)
    means = []
    for _ in range(draws):
        chosen = rng.integers(len(names), size=n)  # with replacement: an archive has more images than these
        means.append(np.mean([values[names[i]][rng.integers(len(values[names[i]]))] for i in chosen]))
    return float(np.std(means))


def dct_control(patches: np.ndarray):
    """One member, the fixed 8x8 DCT (coefficient variances from ``patches``): a model far from the default."""
    from sae_model import TrainConfig, Trainer

    trainer = Trainer(TrainConfig(K=1), device="cpu")
    trainer.initialize(patches)
    return trainer.to_codec()


def main() -> None:
    import torch

    from sae_model import Codec, TrainConfig, sample_patches, train
    from sae_model.pretrained import held_out

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=str(DEV_IMAGES), help="folder of PNG photographs (default: dev images)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512], help="crop sides in pixels")
    parser.add_argument("--crops", type=int, default=3, help="crops per image and size")
    parser.add_argument("--steps", type=int, default=40, help="training steps of the cold candidate")
    parser.add_argument("--draws", type=int, default=2000, help="bootstrap draws")
    args = parser.parse_args()
    torch.set_num_threads(1)

    paths = held_out(args.images)
    if len(paths) < 5:
        raise SystemExit(f"need at least 5 PNG photographs outside the default's training set in {args.images}; "
                         "pass --images DIR")
    train_paths, eval_paths = paths[:3], paths[3:]  # the candidate never sees the images it is measured on
    rng = np.random.default_rng(0)
    from PIL import Image
    patches = np.concatenate([sample_patches(Image.open(p).convert("RGB"), 256, rng) for p in train_paths])
    started = time.perf_counter()
    codecs = {"default": Codec.pretrained(),
              "cold": train(TrainConfig(steps=args.steps, batch_size=1024), patches, device="cpu"),
              "dct": dct_control(patches)}
    print(f"trained the cold candidate in {time.perf_counter() - started:.0f} s")

    result = {"images": [p.name for p in eval_paths], "sizes": {}}
    header = f"{'crop':>5}{'crops':>6}{'sd/image':>9}{'sd(cand-def)/image':>19}" + "".join(
        f"{f'n={n}':>12}" for n in (1, 2, 4, 8))
    lines = []
    for size in args.sizes:
        started = time.perf_counter()
        images = crops(eval_paths, size, args.crops, seed=0)
        rates = per_crop_bd_rates(codecs, [im for _, im in images])
        by_image: dict[str, dict[str, list[float]]] = {name: {} for name in ("default", "cold-default", "dct-default")}
        for stem, im in images:
            values = {name: rates[name].get(im.filename, float("nan")) for name in codecs}
            if not all(np.isfinite(v) for v in values.values()):
                continue  # no PSNR overlap with JPEG (flat crop): summarise drops such images too
            by_image["default"].setdefault(stem, []).append(values["default"])
            by_image["cold-default"].setdefault(stem, []).append(values["cold"] - values["default"])
            by_image["dct-default"].setdefault(stem, []).append(values["dct"] - values["default"])
        flat = {k: [x for v in d.values() for x in v] for k, d in by_image.items()}
        entry = {"crops": len(flat["default"]), "seconds": time.perf_counter() - started,
                 "mean": {k: float(np.mean(v)) for k, v in flat.items()},
                 "sd_per_crop": {k: float(np.std(v)) for k, v in flat.items()}, "sd_of_mean": {}}
        rng = np.random.default_rng(1)
        for n in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32):
            entry["sd_of_mean"][n] = {k: bootstrap(d, n, args.draws, rng) for k, d in by_image.items()}
        result["sizes"][size] = entry
        cells = "".join(f"{entry['sd_of_mean'][n]['default']:>6.2f}/{entry['sd_of_mean'][n]['cold-default']:<5.2f}"
                        if n in entry["sd_of_mean"] else f"{'':>12}" for n in (1, 2, 4, 8))
        lines.append(f"{size:>5}{entry['crops']:>6}{entry['sd_per_crop']['default']:>9.2f}"
                     f"{entry['sd_per_crop']['cold-default']:>19.2f}{cells}")
        print(f"size {size}: {entry['crops']} crops in {entry['seconds']:.0f} s, mean BD-rate vs JPEG "
              + ", ".join(f"{k} {v:+.1f}" for k, v in entry["mean"].items()), flush=True)
    print("\nBD-rate noise (percentage points, sd over image choices): default alone / candidate - default")
    print(header)
    print("\n".join(lines))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "validation-noise.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

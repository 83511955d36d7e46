"""Build the shipped default model (reproducible):

    python -m sae_model.pretrained --images ../shared/data/dev-images [--tables-only]

Trains on the fixed TRAIN_FILES only; every other dev image is held out for bench/.
--tables-only keeps the shipped transforms and refits only the count tables with the current
encoder (what the symbols of the written format look like: format v3 codes residuals of its
prediction, so tables fitted under v2 cost v3 about 1% of its rate).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import blockcoder
from .codec import Codec, default_tables
from .patches import sample_patches
from .train import TrainConfig, train

TRAIN_FILES = ("wikiphoto_001.png", "wikiphoto_007.png", "wikiphoto_013.png", "wikiphoto_019.png",
               "wikiphoto_025.png", "wikiphoto_031.png", "skimage_chelsea.png")
OUT = Path(__file__).parent / "data" / "default"
FIT_QUALITIES = (5, 15, 25, 35, 45, 55, 65, 75, 85, 95)


def held_out(images_dir) -> list[Path]:
    return sorted(p for p in Path(images_dir).glob("*.png") if p.name not in TRAIN_FILES)


def collect_counts(codec: Codec, images, qualities=FIT_QUALITIES) -> blockcoder.SymbolCounter:
    """Run the encoder's analysis on `images` and count the (context, symbol) pairs it would code."""
    counter = blockcoder.SymbolCounter(codec.arrays.K)
    for im in images:
        for q in qualities:
            for tile in codec.analyse(im, q):
                for plane in tile:
                    counter.add(plane)
    return counter


def fit_tables(codec: Codec, images, qualities=FIT_QUALITIES, prior_weight: float = 8.0) -> dict:
    """Tables = counts + prior_weight * (current table's distribution), as integers (the eob
    table of a model without one: counts + prior_weight * uniform)."""
    counter = collect_counts(codec, images, qualities)
    ac, dc, esc = counter.tables()
    eob = counter.eob_table()
    out = {}
    for name, counts in (("ac_table", ac), ("dc_table", dc), ("esc_table", esc), ("eob_table", eob)):
        prior = (codec.weights[name].numpy().astype(np.float64) if name in codec.weights
                 else np.ones(counts.shape))
        prior = prior / prior.sum(-1, keepdims=True)
        t = np.rint(4 * (counts + prior_weight * prior)).astype(np.int64)
        out[name] = torch.from_numpy(np.maximum(t, 1).astype(np.int32))
    return out


def build(images_dir, steps: int = TrainConfig.steps, K: int = 16, seed: int = 0, log=print) -> Codec:
    rng = np.random.default_rng(seed)
    paths = [Path(images_dir) / f for f in TRAIN_FILES]
    images = [Image.open(p).convert("RGB") for p in paths]
    patches = np.concatenate([sample_patches(im, 40_000, rng) for im in images])
    cfg = TrainConfig(seed=seed, steps=steps, K=K)
    codec = train(cfg, patches, device="cpu", tables=default_tables(),
                  callback=lambda s, m: log(f"step {s} {m}") if s % 50 == 0 else None)
    for _ in range(2):  # tables change the encoder's rate-distortion choices: iterate twice
        codec = Codec({**codec.weights, **fit_tables(codec, images)}, codec.config)
    codec.config["train_files"] = list(TRAIN_FILES)
    return codec


def refit(images_dir) -> Codec:
    """The shipped model with its tables refitted (one pass) on TRAIN_FILES under the current encoder."""
    codec = Codec.pretrained()
    images = [Image.open(Path(images_dir) / f).convert("RGB") for f in TRAIN_FILES]
    return Codec({**codec.weights, **fit_tables(codec, images)}, codec.config)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", required=True)
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--steps", type=int, default=TrainConfig.steps)
    ap.add_argument("--K", type=int, default=16)
    ap.add_argument("--tables-only", action="store_true", help="refit the shipped model's tables only")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    codec = refit(args.images) if args.tables_only else build(args.images, args.steps, args.K)
    codec.save(args.out)
    print(f"saved {args.out} fingerprint {codec.fingerprint}")


if __name__ == "__main__":
    main()

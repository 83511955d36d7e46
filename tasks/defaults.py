"""The default of every job option, in one place: the flows' signatures and the CLI's ``--help`` read them here.

Imports nothing heavy, so ``saepress --help`` stays instant.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IngestLimits:
    max_pixels: int = 200_000_000   # images whose header declares more pixels are rejected (decompression bombs)
    max_bytes: int = 256 * 2**20    # larger files are rejected before they are read


@dataclass(frozen=True)
class ExtractOptions:
    patches_per_image: int = 256
    val_fraction: float = 0.15      # share of images held out for validation
    seed: int = 0


@dataclass(frozen=True)
class ShardLimits:
    """A shard closes at whichever limit it reaches first (a single larger file gets a shard alone)."""

    max_items: int = 512
    max_bytes: int = 128 * 2**20    # bytes of the originals it holds


@dataclass(frozen=True)
class Window:
    """Calls in flight on Dask at once (tasks/fanout.py): a few per worker thread keep every worker busy while the
    driver reads a result, and bound the futures, results and planned batches the driver holds whatever the
    archive size. Calls wait on the driver as plain arguments until the window has room."""

    per_thread: int = 2
    least: int = 8


INGEST = IngestLimits()
EXTRACT = ExtractOptions()
SHARDS = ShardLimits()
WINDOW = Window()
TRAIN_SEED = 0
TRAIN_STARTS = ("auto", "warm", "cold")
TRAIN_START = "auto"
# bench/warm_start.py: a warm start (from the shipped default) beat a cold one at 3 images (768 patches) on page
# scans and photographs; from 10 images (2,560 patches) a cold start won on page scans by 1.7-4 BD-rate points,
# and on photographs neither beat the default (which then stays in use). "auto" starts warm below this many patches.
WARM_BELOW_ROWS = 2048
# Least validation data for a promotion (bench/validation_noise.py): over the choice of images, the BD-rate
# difference between two models has a standard deviation of ~3 points per image, ~1.0-1.2 points for 8 images of
# 128-256 px. Below this a new model is registered but not promoted.
MIN_VAL_IMAGES = 8
MIN_VAL_PIXELS = 8 * 128 * 128
MODEL_NAME = "saepress-codec"      # registered model name of `train` and of compress's champion lookup
FIDELITY = "lossy"                  # compress --fidelity: lossy, jpeg-exact or lossless (tasks/exact.py)
QUALITY = 50.0                      # compress quality when no --quality, --target-bpp or --target-psnr is given
SERVE_PORT = 4200                   # port of the local Prefect server `saepress serve` starts

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


INGEST = IngestLimits()
EXTRACT = ExtractOptions()
SHARDS = ShardLimits()
TRAIN_SEED = 0
MODEL_NAME = "saepress-codec"      # registered model name of `train` and of compress's champion lookup
QUALITY = 50.0                      # compress quality when no --quality, --target-bpp or --target-psnr is given
SERVE_PORT = 4200                   # port of the local Prefect server `saepress serve` starts

"""The rate and quality of a set of coded items, one way for the job summary and the report.

The rate is every coded bit over every coded pixel, the archive's bpp: a mean over items would let a few tiny
files dominate (32 bpp on a mixed archive). The medians describe a typical item.
"""
from __future__ import annotations

import math
import statistics

# The fields of an item record these summaries read (compress results and shard rows both have them).
FIELDS = ("kind", "compressed_bytes", "width", "height", "frames", "bpp", "psnr")


def finite(values) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def rate_summary(items: list[dict]) -> dict[str, float]:
    """coded count, bpp (coded bits / coded pixels), median item bpp, median and lowest item PSNR (dB)."""
    coded = [item for item in items if item["kind"] == "coded"]
    pixels = sum(item["width"] * item["height"] * (item.get("frames") or 1) for item in coded)  # every frame
    psnr = finite(item["psnr"] for item in coded)
    return {"coded": len(coded),
            "bpp": 8 * sum(item["compressed_bytes"] for item in coded) / pixels if pixels else 0.0,
            "median_bpp": statistics.median(item["bpp"] for item in coded) if coded else 0.0,
            "median_psnr": statistics.median(psnr) if psnr else 0.0,
            "min_psnr": min(psnr) if psnr else 0.0}

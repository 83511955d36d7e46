"""The rate and quality of a set of coded items, one way for the job summary and the report.

The rate is every coded bit over every coded pixel, the archive's bpp: a mean over items would let a few tiny
files dominate (32 bpp on a mixed archive). The medians describe a typical item.
"""
from __future__ import annotations

import math
import statistics
from array import array


def finite(values) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


class Rates:
    """The running summary of coded items, added one at a time: two sums and two float arrays (16 bytes an item),
    so a driver that stores millions of items never keeps a record per item."""

    def __init__(self):
        self.bits = self.pixels = 0
        self.bpp, self.psnr = array("d"), array("d")

    def add(self, item: dict) -> None:
        """Count ``item`` if it is coded: its kind, compressed_bytes, width, height, frames, bpp and psnr (compress
        results and shard rows both have them)."""
        if item["kind"] != "coded":
            return
        self.bits += 8 * item["compressed_bytes"]
        self.pixels += item["width"] * item["height"] * (item.get("frames") or 1)  # every frame
        self.bpp.append(item["bpp"])
        if item["psnr"] is not None and math.isfinite(item["psnr"]):
            self.psnr.append(item["psnr"])

    def summary(self) -> dict[str, float]:
        """coded count, bpp (coded bits / coded pixels), median item bpp, median and lowest item PSNR (dB)."""
        return {"coded": len(self.bpp),
                "bpp": self.bits / self.pixels if self.pixels else 0.0,
                "median_bpp": statistics.median(self.bpp) if self.bpp else 0.0,
                "median_psnr": statistics.median(self.psnr) if self.psnr else 0.0,
                "min_psnr": min(self.psnr) if self.psnr else 0.0}


def rate_summary(items) -> dict[str, float]:
    """Rates.summary of ``items``."""
    rates = Rates()
    for item in items:
        rates.add(item)
    return rates.summary()

"""A generated mixed archive for the exact fidelity modes: JPEGs the recompressor takes and one it refuses, PNGs
at 8 and 16 bits (grey, RGB, alpha, palettes, bilevel), a 16-bit TIFF master, an animation and an incompressible
image. Content is cut from the shipped sample photo so that it compresses like a photograph.

``exact_cases()`` maps file name -> ``ExactCase``; ``expect`` says what the lossless engine must do with it.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import imagecodecs
import numpy as np
from PIL import Image

SAMPLE = Path(__file__).resolve().parents[1] / "flows" / "sample_data" / "chelsea.png"


@dataclass(frozen=True)
class ExactCase:
    data: bytes
    expect: str          # jpeg (recompressed byte-exact), pixels (lossless), verbatim (refused, kept as is)
    mode: str | None = None   # lossless: the exact mode and bits per sample
    bits: int | None = None


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


@lru_cache(maxsize=1)
def exact_cases() -> dict[str, ExactCase]:
    rgb = np.asarray(Image.open(SAMPLE).convert("RGB"))[60:156, 100:228].copy()   # 128x96
    h, w = rgb.shape[:2]
    ramp = np.tile(np.linspace(0, 255, w, dtype=np.uint8), (h, 1))
    grey = rgb[:, :, 1].copy()
    photo = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x010F], exif[0x0112] = "saepress tests", 6
    # a 16-bit master: a 2x larger crop box-filtered at 16-bit precision (real low bits, as from a scanner)
    big = np.asarray(Image.open(SAMPLE).convert("RGB"))[20:212, 60:316].astype(np.float64)
    rgb16 = np.round(big.reshape(h, 2, w, 2, 3).mean(axis=(1, 3)) * 257).astype(np.uint16)
    frames = [Image.fromarray(np.roll(rgb, 8 * i, axis=1)).convert("P") for i in range(3)]
    rng = np.random.default_rng(7)
    return {
        "photo_baseline.jpg": ExactCase(_save(photo, "JPEG", quality=90, exif=exif.tobytes()), "jpeg"),
        "photo_progressive.jpg": ExactCase(_save(photo, "JPEG", quality=75, progressive=True), "jpeg"),
        "photo_grey.jpg": ExactCase(_save(Image.fromarray(grey), "JPEG", quality=95), "jpeg"),
        "photo_cmyk.jpg": ExactCase(_save(photo.convert("CMYK"), "JPEG", quality=90), "verbatim"),
        "rgb8.png": ExactCase(_save(photo, "PNG", exif=exif.tobytes()), "pixels", "RGB", 8),
        "rgba8.png": ExactCase(_save(Image.fromarray(np.dstack([rgb, ramp])), "PNG"), "pixels", "RGBA", 8),
        "grey_alpha.png": ExactCase(_save(Image.fromarray(np.dstack([grey, ramp]), "LA"), "PNG"), "pixels", "LA", 8),
        "palette.png": ExactCase(_save(photo.convert("P", palette=Image.ADAPTIVE, colors=200), "PNG",
                                       transparency=3), "pixels", "P", 8),
        "palette4.png": ExactCase(_save(photo.convert("P", palette=Image.ADAPTIVE, colors=16), "PNG", bits=4),
                                  "pixels", "P", 4),
        "bilevel.png": ExactCase(_save(Image.fromarray(grey).convert("1"), "PNG"), "pixels", "1", 1),
        "rgb16.png": ExactCase(imagecodecs.png_encode(rgb16), "pixels", "RGB;16", 16),
        "grey16.png": ExactCase(imagecodecs.png_encode(np.ascontiguousarray(rgb16[:, :, 0])), "pixels", "I;16", 16),
        "master16.tif": ExactCase(imagecodecs.tiff_encode(rgb16, compression="deflate", resolution=(300, 300)),
                                  "pixels", "RGB;16", 16),
        "bitmap.bmp": ExactCase(_save(photo, "BMP"), "pixels", "RGB", 8),
        "animated.gif": ExactCase(_save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80),
                                  "verbatim"),
        "noise.png": ExactCase(_save(Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)), "PNG"),
                               "verbatim"),
    }

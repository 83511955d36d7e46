"""Input normalisation and colour transforms.

Conversions (reported by `Codec.decode` in ``image.info["saepress"]``):
- EXIF orientation is applied to the pixels (the stored EXIF then says orientation 1); EXIF and ICC are the
  file's own bytes, and metadata that cannot be kept is dropped with a note, never an error (metadata.py).
- P / PA -> RGB, or RGBA when the palette has transparency; "1" -> L; YCbCr/LAB/HSV -> RGB.
- CMYK -> RGB (Pillow's conversion); a CMYK ICC profile is dropped since it no longer applies.
- I;16 / I / F (16-bit or wider) -> L by taking the top 8 bits of the 16-bit value
  (values clipped to 0..65535), flagged in the header.
- Alpha (LA, RGBA) is kept losslessly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from . import bitstream, metadata
from .errors import UnsupportedImageError


@dataclass
class Prepared:
    pixels: np.ndarray          # (H, W, C) uint8, C = 1 (L) or 3 (RGB)
    alpha: np.ndarray | None    # (H, W) uint8
    mode: str                   # decoded mode: L, LA, RGB, RGBA
    source_mode: str
    flags: int = 0
    exif: bytes = b""
    icc: bytes = b""
    notes: list[str] = field(default_factory=list)  # metadata dropped or not applied (metadata.Upright.notes)


def prepare(image) -> Prepared:
    if isinstance(image, np.ndarray):
        image = _from_array(image)
    if not isinstance(image, Image.Image):
        raise UnsupportedImageError(f"expected PIL.Image or numpy array, got {type(image).__name__}")
    flags = 0
    source_mode = image.mode if image.mode in bitstream.SOURCE_MODES else "other"
    kept = metadata.upright(image)
    image, notes = kept.image, list(kept.notes)
    if kept.orientation != 1:
        flags |= bitstream.FLAG_ORIENTED
    try:
        image, mode, extra = _to_supported(image)
    except (ValueError, OSError) as e:
        raise UnsupportedImageError(f"cannot convert mode {image.mode}: {e}") from None
    flags |= extra
    icc = kept.icc
    if flags & bitstream.FLAG_CMYK and icc:
        icc = b""
        notes.append("ICC profile dropped: a CMYK profile does not describe the RGB pixels")
    arr = np.asarray(image, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    alpha = np.ascontiguousarray(arr[:, :, -1]) if mode in ("LA", "RGBA") else None
    colour = np.ascontiguousarray(arr[:, :, :1] if mode in ("L", "LA") else arr[:, :, :3])
    return Prepared(colour, alpha, mode, source_mode, flags, kept.exif, icc, notes)


def _from_array(a: np.ndarray) -> Image.Image:
    if a.dtype == np.uint16:
        if a.ndim != 2:
            raise UnsupportedImageError("uint16 arrays must be 2-D")
        return Image.fromarray(np.ascontiguousarray(a))  # mode I;16
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or a.size == 0:
        raise UnsupportedImageError(f"unsupported array {a.dtype} {a.shape}")
    if a.ndim == 3:
        modes = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
        if a.shape[2] not in modes:
            raise UnsupportedImageError(f"unsupported channel count {a.shape[2]}")
        if a.shape[2] == 1:
            a = a[:, :, 0]
        else:
            return Image.fromarray(np.ascontiguousarray(a), modes[a.shape[2]])
    return Image.fromarray(np.ascontiguousarray(a), "L")


def _to_supported(image: Image.Image) -> tuple[Image.Image, str, int]:
    m = image.mode
    if m in ("L", "LA", "RGB", "RGBA"):
        return image, m, 0
    if m in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(image.convert("I") if m != "F" else image, dtype=np.float64)
        a = np.clip(a, 0, 65535).astype(np.uint32) >> 8
        return Image.fromarray(a.astype(np.uint8), "L"), "L", bitstream.FLAG_REDUCED16
    if m == "CMYK":
        return image.convert("RGB"), "RGB", bitstream.FLAG_CMYK
    if m in ("P", "PA"):
        has_alpha = m == "PA" or "transparency" in image.info
        out = image.convert("RGBA" if has_alpha else "RGB")
        return out, out.mode, 0
    if m == "1":
        return image.convert("L"), "L", 0
    return image.convert("RGB"), "RGB", 0


# ---- colour: full-range JFIF YCbCr, float64 elementwise (deterministic) ----

def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float64)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128.0 - 0.168735892 * r - 0.331264108 * g + 0.5 * b
    cr = 128.0 + 0.5 * r - 0.418687589 * g - 0.081312411 * b
    return np.stack([y, cb, cr], axis=-1)


def ycbcr_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """float32 elementwise IEEE arithmetic: identical on every machine and thread count.
    R = y + 1.402 cr, G = (y - 0.344 cb) - 0.714 cr, B = y + 1.772 cb, computed in place."""
    f32 = np.float32
    y = y.astype(f32)
    y += f32(0.5)  # +0.5 then floor = round half up
    cb = cb.astype(f32)
    cb -= f32(128.0)
    cr = cr.astype(f32)
    cr -= f32(128.0)
    out = np.empty(y.shape + (3,), np.uint8)
    t = np.empty_like(y)
    u = np.empty_like(y)
    for i in range(3):
        if i == 0:
            np.multiply(cr, f32(1.402), out=t)
            t += y
        elif i == 1:
            np.multiply(cb, f32(0.344136286), out=t)
            np.subtract(y, t, out=t)
            np.multiply(cr, f32(0.714136286), out=u)
            t -= u
        else:
            np.multiply(cb, f32(1.772), out=t)
            t += y
        np.clip(t, 0, 255.5, out=t)
        out[..., i] = t  # float -> uint8 truncates = floor for non-negative values
    return out


def downsample2(p: np.ndarray) -> np.ndarray:
    """2x2 mean; p has even height and width."""
    return 0.25 * (p[0::2, 0::2] + p[1::2, 0::2] + p[0::2, 1::2] + p[1::2, 1::2])


def upsample2(p: np.ndarray) -> np.ndarray:
    """Separable 3/4-1/4 ("fancy") upsampling with edge replication: centred like downsample2."""
    def up(a, axis):
        a = np.moveaxis(a, axis, 0)
        prev = np.concatenate([a[:1], a[:-1]])
        nxt = np.concatenate([a[1:], a[-1:]])
        out = np.empty((2 * a.shape[0],) + a.shape[1:])
        out[0::2] = 0.75 * a + 0.25 * prev
        out[1::2] = 0.75 * a + 0.25 * nxt
        return np.moveaxis(out, 0, axis)
    return up(up(p, 0), 1)

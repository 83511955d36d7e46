"""Fidelity levels of a compress job, and the exact kinds of stored item (byte-exact JPEG, pixel-exact image).

``--fidelity`` (flag of ``compress``, key ``fidelity`` of a schedule):
- ``lossy`` (default): every decodable image is coded by the learned codec (kind ``coded``), as before;
- ``jpeg-exact``: JPEG files are recompressed so that they come back byte for byte (kind ``jpeg-exact``),
  everything else is coded as with ``lossy``;
- ``lossless``: JPEG files come back byte for byte, every other image pixel for pixel (kind ``lossless``: all
  channels, alpha, palette, 16-bit samples); nothing is coded lossily.
In the exact levels a file that cannot come back exactly (CMYK or arithmetic-coded JPEG, animation, a mode the
lossless engine does not hold, or one that would not shrink) is stored verbatim (``passthrough``) with the reason.

Rows of the exact kinds carry ``exact_sha256``: the sha256 of the rebuilt JPEG file (``jpeg-exact``, equal to the
item id) or of the decoded pixels as ``sae_model.lossless.pixel_sha256`` defines it (``lossless``). Restoring a
row and ``verify --decode`` recompute it and refuse a row whose rebuild differs. ``jpeg-exact`` rows come back
as the original JPEG file at its own path; ``lossless`` rows as a PNG of the same samples (16-bit stays 16-bit:
PNG holds 16-bit grey, RGB and RGBA), named like coded images (``scan.tif`` -> ``scan.tif.png``).
"""
from __future__ import annotations

import io
from typing import Any

# Pillow and sae_model (torch with it) are imported where items are coded: the command line reads FIDELITIES.
from tasks.defaults import FIDELITY

FIDELITIES = ("lossy", "jpeg-exact", "lossless")
EXACT_KINDS = ("jpeg-exact", "lossless")
# Pillow's names for JPEG files; MPO is a camera JPEG with more pictures after the first (kept as trailing data).
JPEG_FORMATS = ("JPEG", "MPO")


def check_fidelity(value: str | None) -> str:
    """The fidelity level named by ``value`` (None: the default); ValueError says which names exist."""
    value = FIDELITY if value is None else str(value).strip().lower()
    if value not in FIDELITIES:
        raise ValueError(f"unknown fidelity {value!r}: use one of {', '.join(FIDELITIES)}")
    return value


def wants_exact(fidelity: str, fmt: str | None) -> bool:
    """Whether an item of format ``fmt`` is stored by the exact engines (else by the lossy codec)."""
    return fidelity == "lossless" or (fidelity == "jpeg-exact" and fmt in JPEG_FORMATS)


def encode_exact(data: bytes, fmt: str | None, fidelity: str, config=None) -> dict[str, Any]:
    """The shard row (less ids and sizes) for one file stored exactly, or verbatim with the reason why not.
    ``reason`` of a lossless row lists what the rebuilt file will not carry (e.g. TIFF tags), if anything;
    ``config``: a ``sae_model.lossless.LosslessConfig`` (None: its defaults)."""
    from PIL import Image

    from sae_model import jpeg_exact, lossless
    from sae_model.errors import NotExactError

    try:
        if fmt in JPEG_FORMATS:
            stored, digest, kind = jpeg_exact.recompress(data), jpeg_exact.exact_sha256(data), "jpeg-exact"
            notes = None
            with Image.open(io.BytesIO(data)) as im:
                (width, height), mode = im.size, im.mode
        else:
            stored, digest, px = lossless.encode(data, config or lossless.LosslessConfig())
            kind, width, height, mode = "lossless", px.width, px.height, px.mode
            notes = "; ".join(px.notes) or None
    except NotExactError as exc:
        return {"kind": "passthrough", "data": data, "format": fmt, "reason": f"kept verbatim ({fidelity}): {exc}",
                "conversions": []}
    return {"kind": kind, "width": width, "height": height, "mode": mode, "format": fmt, "data": stored,
            "bpp": 8 * len(stored) / (width * height), "exact_sha256": digest, "reason": notes, "conversions": []}


def rebuild(row: dict, max_pixels: int) -> bytes:
    """The file of an exact row (the JPEG, or a PNG of the pixels), checked against its ``exact_sha256``;
    a CodecError says why not. Both are refused above ``max_pixels`` before anything is decoded."""
    from sae_model import jpeg_exact, lossless
    from sae_model.errors import CorruptStreamError, ImageTooLargeError

    if row["kind"] == "jpeg-exact":
        if (row["width"] or 0) * (row["height"] or 0) > max_pixels:
            raise ImageTooLargeError(f"JPEG of {row['width']}x{row['height']} pixels is over the decode limit")
        data = jpeg_exact.rebuild(row["data"])
        if jpeg_exact.exact_sha256(data) != row["exact_sha256"]:
            raise CorruptStreamError("rebuilt JPEG differs from the original (sha256 mismatch)")
        return data
    if lossless.stored_sha256(row["data"]) != row["exact_sha256"]:
        raise CorruptStreamError("lossless item's pixel hash differs from the row's exact_sha256")
    return lossless.rebuild(row["data"], max_pixels)

"""Pixel-exact lossless items: every sample of every channel (alpha, palette indices, 16-bit values) comes back.

What is exact ("pixels"): the samples as the file stores them, before any colour management or EXIF orientation,
at the file's bit depth, plus the palette colours of palette images. ``pixel_sha256`` hashes exactly that::

    sha256( b"saepress-pixels-1\\n"
            + f"{mode} {width} {height} {bits} {frames}\\n"      (ASCII; frames is 1: animations are refused)
            + palette                                            (P only: RGB triples of entries 0..max index)
            + samples )                                          (row-major, channels interleaved; 16-bit big-endian)

Modes: ``1`` (1-bit grey), ``L``, ``LA``, ``RGB``, ``RGBA``, ``P`` (1/2/4/8-bit palette), and at 16 bits per
sample ``I;16``, ``LA;16``, ``RGB;16``, ``RGBA;16``.

What each source becomes (``rebuild``, always a PNG):
- PNG -> PNG with the same colour type and bit depth and every other chunk kept byte for byte, in order
  (palette, transparency, ICC, EXIF, text, ...); only the compressed pixel data and interlacing differ.
- TIFF (one page, 8/16-bit unsigned grey/RGB, optional alpha) -> PNG of the same samples (16-bit stays 16-bit),
  its ICC profile as iCCP and its resolution as pHYs; other tags are listed in the item's notes.
- other single-frame formats Pillow reads in the modes above (GIF, BMP, WebP, ...) -> PNG with the palette,
  transparency, ICC profile and EXIF; other format-specific fields are listed in the notes.
Refused (``NotExactError``; the caller keeps the file verbatim): animations / multi-page files, other modes
(CMYK, 32-bit, float, 2/4-bit grey, ...), anything whose rebuilt file does not read back to the same hash, and
items that would not be smaller than the original file.

Stored item (``MAGIC`` then version 1)::

    b"SXL" 0x01 | u32 big-endian N | N bytes UTF-8 JSON header | sections, concatenated in header order
    header: {"mode", "width", "height", "bits", "source": "PNG" | "TIFF" | "other",
             "sha256": pixel hash, "notes": [str], "sections": [[name, length], ...]}
    sections: "pixels"  JPEG XL lossless codestream of the samples (palette images: the indices)
              "before", "after"  PNG chunks written before / after the pixel data (standard chunk encoding)
"""
from __future__ import annotations

import hashlib
import io
import json
import struct
import zlib
from dataclasses import dataclass, field

import imagecodecs
import numpy as np
from PIL import Image

from . import pngfile
from .codec import DEFAULT_MAX_PIXELS
from .errors import CorruptStreamError, ImageTooLargeError, NotExactError

MAGIC = b"SXL\x01"
ENGINE = "jpegxl-lossless"
HASH_PREFIX = b"saepress-pixels-1\n"
MODES_8 = ("1", "L", "LA", "RGB", "RGBA", "P")
MODES_16 = {1: "I;16", 2: "LA;16", 3: "RGB;16", 4: "RGBA;16"}
CHANNEL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
PNG_COLOUR_MODE = {0: "L", 2: "RGB", 4: "LA", 6: "RGBA"}
MODE_COLOUR_TYPE = {"1": 0, "L": 0, "LA": 4, "RGB": 2, "RGBA": 6, "P": 3, "I;16": 0, "LA;16": 4, "RGB;16": 2,
                    "RGBA;16": 6}
# TIFF tags that describe the pixel layout (rebuilt) or are kept; every other tag present is noted as not kept.
TIFF_LAYOUT_TAGS = {254, 256, 257, 258, 259, 262, 273, 274, 277, 278, 279, 282, 283, 284, 296, 305, 317, 338,
                    339, 34675}
# Pillow info keys that are pixel-layout facts or are written back (transparency, ICC, EXIF).
KEPT_INFO = {"transparency", "icc_profile", "exif", "dpi", "compression", "gamma", "version", "background",
             "interlace", "progression", "loop", "duration", "extension", "loss", "aspect"}


@dataclass(frozen=True)
class LosslessConfig:
    """JPEG XL lossless effort (1 fastest .. 9 smallest); bench/lossless.py measured the default."""
    effort: int = 7


@dataclass(frozen=True)
class Pixels:
    mode: str
    samples: np.ndarray              # (H, W, C) uint8 or uint16
    bits: int                        # bits per sample in the source file (1, 2, 4, 8 or 16)
    palette: bytes = b""             # P only: RGB triples
    source: str = "other"            # PNG, TIFF or other
    before: list = field(default_factory=list)  # PNG chunks kept (before / after the pixel data)
    after: list = field(default_factory=list)
    notes: tuple = ()

    @property
    def width(self) -> int:
        return self.samples.shape[1]

    @property
    def height(self) -> int:
        return self.samples.shape[0]


def pixel_sha256(px: Pixels) -> str:
    h = hashlib.sha256(HASH_PREFIX)
    h.update(f"{px.mode} {px.width} {px.height} {px.bits} 1\n".encode())
    if px.mode == "P":
        h.update(px.palette[:3 * (int(px.samples.max(initial=0)) + 1)])
    h.update(np.ascontiguousarray(px.samples, dtype=">u2" if px.bits == 16 else np.uint8).tobytes())
    return h.hexdigest()


# ---- reading the exact samples of a source file ----

def read_pixels(data: bytes) -> Pixels:
    """The exact samples of an image file; ``NotExactError`` says why a file cannot be held exactly."""
    try:
        im = Image.open(io.BytesIO(data))
    except Exception as e:
        raise NotExactError(f"not an image Pillow can read ({type(e).__name__})") from None
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        raise NotExactError(f"{im.format} with {frames} frames: animations and multi-page files are kept verbatim")
    try:
        if im.format == "PNG":
            return _read_png(data, im)
        if im.format == "TIFF":
            return _read_tiff(data, im)
        return _read_other(im)
    except NotExactError:
        raise
    except Exception as e:  # a decoder failure on this file: it stays verbatim, with the cause
        raise NotExactError(f"cannot read the exact samples ({type(e).__name__}: {e})") from None


def _read_png(data: bytes, im: Image.Image) -> Pixels:
    parts = pngfile.chunks(data)
    hdr = pngfile.header(parts)
    before, after = pngfile.kept_chunks(parts)
    notes = ("interlacing not kept (pixels are)",) if hdr.interlace else ()
    if hdr.colour_type == 3 or hdr.bit_depth == 1:
        im.load()
        samples = np.asarray(im, dtype=np.uint8)[:, :, None]
        palette = b"".join(p for k, p in parts if k == b"PLTE") if hdr.colour_type == 3 else b""
        return Pixels("P" if palette else "1", samples, hdr.bit_depth, palette, "PNG", before, after, notes=notes)
    if hdr.bit_depth < 8:
        raise NotExactError(f"{hdr.bit_depth}-bit greyscale PNG is kept verbatim")
    # libpng expands a tRNS colour into an alpha channel; the stored samples are the first channels
    samples = imagecodecs.png_decode(data)
    samples = samples.reshape(hdr.height, hdr.width, -1)[:, :, :pngfile.CHANNELS[hdr.colour_type]]
    mode = PNG_COLOUR_MODE[hdr.colour_type]
    if hdr.bit_depth == 16:
        mode = MODES_16[samples.shape[2]]
    return Pixels(mode, np.ascontiguousarray(samples), hdr.bit_depth, b"", "PNG", before, after, notes=notes)


def _read_tiff(data: bytes, im: Image.Image) -> Pixels:
    tags = dict(im.tag_v2)
    bits = set(np.atleast_1d(tags.get(258, 1)).tolist())
    photometric = tags.get(262)
    if set(np.atleast_1d(tags.get(339, 1)).tolist()) != {1}:
        raise NotExactError("TIFF with non-integer samples is kept verbatim")
    if len(bits) != 1 or bits.pop() not in (8, 16) or photometric not in (1, 2):
        raise NotExactError(f"TIFF with {tags.get(258)} bits, photometric {photometric} is kept verbatim")
    samples = imagecodecs.tiff_decode(data)
    if samples.dtype not in (np.uint8, np.uint16):
        raise NotExactError(f"TIFF with {samples.dtype} samples is kept verbatim")
    samples = samples.reshape(im.height, im.width, -1) if samples.size == im.width * im.height * tags.get(277, 1) \
        else None
    if samples is None or samples.shape[2] not in (1, 2, 3, 4) or (photometric == 2) != (samples.shape[2] >= 3):
        raise NotExactError("TIFF sample layout is not grey/RGB with at most one alpha; kept verbatim")
    bits = 16 if samples.dtype == np.uint16 else 8
    mode = MODES_16[samples.shape[2]] if bits == 16 else CHANNEL_MODES[samples.shape[2]]
    before = _iccp(bytes(tags.get(34675, b"")))
    if 282 in tags and 283 in tags:
        # TIFF resolution unit: 1 none (a bare aspect ratio), 2 inch, 3 centimetre
        scale = {2: 1 / 0.0254, 3: 100.0}.get(int(tags.get(296, 2)))
        before += _phys(float(tags[282]), float(tags[283]), scale)
    dropped = sorted(set(tags) - TIFF_LAYOUT_TAGS)
    notes = (f"TIFF tags not kept: {', '.join(map(str, dropped))}",) if dropped else ()
    return Pixels(mode, np.ascontiguousarray(samples), bits, b"", "TIFF", before, notes=notes)


def _read_other(im: Image.Image) -> Pixels:
    if im.mode not in MODES_8:
        raise NotExactError(f"{im.format} in mode {im.mode} is kept verbatim (lossless holds {', '.join(MODES_8)})")
    im.load()
    samples = np.asarray(im, dtype=np.uint8)
    samples = samples[:, :, None] if samples.ndim == 2 else samples
    palette = bytes(im.getpalette("RGB") or b"") if im.mode == "P" else b""
    before = _info_chunks(im, palette)
    dropped = sorted(set(im.info) - KEPT_INFO)
    notes = (f"{im.format} fields not kept: {', '.join(dropped)}",) if dropped else ()
    return Pixels(im.mode, np.ascontiguousarray(samples), 1 if im.mode == "1" else 8, palette, "other", before,
                  notes=notes)


def _info_chunks(im: Image.Image, palette: bytes) -> list:
    """PNG chunks for what a non-PNG source carries besides pixels: palette, transparency, ICC, EXIF."""
    out = _iccp(im.info.get("icc_profile") or b"")
    if im.info.get("dpi"):
        out += _phys(*map(float, im.info["dpi"]), 1 / 0.0254)
    if palette:
        out.append((b"PLTE", palette))
    t = im.info.get("transparency")
    if t is not None:
        if im.mode == "P":
            alpha = bytearray(t) if isinstance(t, bytes) else bytearray(b"\xff" * (len(palette) // 3))
            if isinstance(t, int) and t < len(alpha):
                alpha[t] = 0
            out.append((b"tRNS", bytes(alpha)))
        elif im.mode == "L" and isinstance(t, int):
            out.append((b"tRNS", struct.pack(">H", t)))
        elif im.mode == "RGB" and isinstance(t, tuple):
            out.append((b"tRNS", struct.pack(">HHH", *t)))
    exif = im.info.get("exif")
    if exif:
        out.append((b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    return out


def _iccp(profile: bytes) -> list:
    return [(b"iCCP", b"icc\x00\x00" + zlib.compress(profile))] if profile else []


def _phys(x: float, y: float, per_metre: float | None) -> list:
    """PNG pHYs: pixels per metre (unit 1), or a bare aspect ratio (unit 0) when the source has no unit."""
    if x <= 0 or y <= 0:
        return []
    scale, unit = (per_metre, 1) if per_metre else (1.0, 0)
    return [(b"pHYs", struct.pack(">IIB", round(x * scale), round(y * scale), unit))]


# ---- the stored item ----

def encode(data: bytes, config: LosslessConfig = LosslessConfig()) -> tuple[bytes, str, Pixels]:
    """Store the image file ``data`` pixel for pixel: (item bytes, pixel sha256, the pixels). Every item is decoded
    and its file rebuilt and read again before it is returned."""
    px = read_pixels(data)
    digest = pixel_sha256(px)
    codestream = _jxl_encode(px, config)
    sections = [("pixels", codestream), ("before", _pack_chunks(px.before)), ("after", _pack_chunks(px.after))]
    head = {"mode": px.mode, "width": px.width, "height": px.height, "bits": px.bits, "source": px.source,
            "sha256": digest, "notes": list(px.notes),
            "sections": [[name, len(blob)] for name, blob in sections if blob]}
    blob = json.dumps(head, separators=(",", ":")).encode()
    item = MAGIC + struct.pack(">I", len(blob)) + blob + b"".join(b for _, b in sections if b)
    try:
        back = read_pixels(rebuild(item))
    except (NotExactError, CorruptStreamError) as e:
        raise NotExactError(f"the rebuilt file does not read back ({e})") from None
    if pixel_sha256(back) != digest or back.mode != px.mode or back.bits != px.bits:
        raise NotExactError("the rebuilt file's pixels differ from the original's")
    if len(item) >= len(data):
        raise NotExactError(f"lossless coding saves nothing on this file ({len(item)} >= {len(data)} bytes)")
    return item, digest, px


def _jxl_encode(px: Pixels, config: LosslessConfig) -> bytes:
    channels = px.samples.shape[2]
    samples = px.samples if channels > 1 else px.samples[:, :, 0]
    # imagecodecs infers grey / grey+alpha / RGB / RGBA from the shape (an explicit "gray" for two channels
    # codes the alpha as a second grey image, 2.3x larger)
    return imagecodecs.jpegxl_encode(np.ascontiguousarray(samples), lossless=True, effort=config.effort,
                                     bitspersample=px.bits, numthreads=1)


def _pack_chunks(parts: list) -> bytes:
    return b"".join(pngfile.chunk(k, p) for k, p in parts)


def _unpack_chunks(blob: bytes) -> list:
    return pngfile.chunks(pngfile.SIGNATURE + blob + pngfile.chunk(b"IEND", b""))[:-1] if blob else []


def read_item(item: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[dict, dict]:
    """The header and the sections of a stored item (``CorruptStreamError`` when it is not well formed)."""
    if not item.startswith(MAGIC) or len(item) < 8:
        raise CorruptStreamError("not a lossless item (bad magic)")
    n = struct.unpack(">I", item[4:8])[0]
    try:
        head = json.loads(item[8:8 + n])
        pos, sections = 8 + n, {}
        for name, length in head["sections"]:
            sections[name] = item[pos:pos + length]
            pos += length
        width, height = int(head["width"]), int(head["height"])
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptStreamError(f"lossless item header is malformed ({e})") from None
    if pos != len(item) or "pixels" not in sections:
        raise CorruptStreamError("lossless item is truncated or has trailing bytes")
    if width * height > max_pixels:
        raise ImageTooLargeError(f"lossless item claims {width}x{height} pixels, over the limit of {max_pixels}; "
                                 "raise max_pixels if the image is real")
    return head, sections


def decode(item: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Pixels:
    """The exact pixels of a stored item, checked against its stored hash."""
    head, sections = read_item(item, max_pixels)
    try:
        samples = imagecodecs.jpegxl_decode(sections["pixels"], numthreads=1)
    except (imagecodecs.JpegxlError, RuntimeError, ValueError) as e:  # libjxl's errors on a damaged stream
        raise CorruptStreamError(f"lossless item's pixels do not decode: {e}") from None
    samples = samples.reshape(samples.shape[0], samples.shape[1], -1)
    if samples.shape[:2] != (head["height"], head["width"]):
        raise CorruptStreamError("lossless item's pixels do not have the size its header says")
    before = _unpack_chunks(sections.get("before", b""))
    palette = b"".join(p for k, p in before if k == b"PLTE")
    px = Pixels(head["mode"], samples, head["bits"], palette, head["source"], before,
                _unpack_chunks(sections.get("after", b"")), tuple(head["notes"]))
    if pixel_sha256(px) != head["sha256"]:
        raise CorruptStreamError("lossless item's pixels do not match their stored sha256")
    return px


def stored_sha256(item: bytes) -> str:
    return read_item(item)[0]["sha256"]


def rebuild(item: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """The PNG file of a stored item (PNG holds every mode above, 16-bit RGB and RGBA included)."""
    px = decode(item, max_pixels)
    return pngfile.write(px.samples, px.bits, MODE_COLOUR_TYPE[px.mode], px.before, px.after)

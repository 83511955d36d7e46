"""PNG output of decoded items: still images, and animated PNG (APNG) for frame sequences.

Animations are written here rather than by Pillow's APNG writer, which merges identical consecutive frames and
crops frames to the changed area: the output must hold exactly the stored frames with their durations. Every
frame is a full frame (dispose none, blend source), so any APNG reader shows the same pictures.
"""
from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterable
from fractions import Fraction

from PIL import Image, PngImagePlugin

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The widest mode among the frames decides the animation's mode (an APNG has one pixel format).
_WIDER = {("L", "RGB"): "RGB", ("L", "LA"): "LA", ("L", "RGBA"): "RGBA", ("LA", "RGB"): "RGBA",
          ("LA", "RGBA"): "RGBA", ("RGB", "RGBA"): "RGBA"}


def common_mode(modes: Iterable[str]) -> str:
    mode = None
    for m in modes:
        mode = m if mode is None or mode == m else _WIDER.get(tuple(sorted((mode, m))), "RGBA")
    return mode or "RGB"


def png_bytes(image: Image.Image, exif: bytes = b"", icc: bytes = b"", text: dict[str, str] | None = None) -> bytes:
    """One PNG with the EXIF, ICC and text chunks given (text as iTXt, UTF-8)."""
    options = {}
    if exif:
        options["exif"] = exif
    if icc:
        options["icc_profile"] = icc
    if text:
        info = PngImagePlugin.PngInfo()
        for key, value in text.items():
            info.add_itxt(key, value, zip=len(value) > 1024)
        options["pnginfo"] = info
    sink = io.BytesIO()
    image.save(sink, "PNG", **options)
    return sink.getvalue()


def _chunks(data: bytes):
    offset = len(SIGNATURE)
    while offset < len(data):
        (length,) = struct.unpack_from(">I", data, offset)
        kind = data[offset + 4:offset + 8]
        yield kind, data[offset + 8:offset + 8 + length]
        offset += 12 + length


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def delay(duration_ms: float) -> tuple[int, int]:
    """APNG delay fraction (numerator, denominator, both u16) for a duration in ms; ValueError if none fits."""
    fraction = Fraction(duration_ms / 1000).limit_denominator(65535)
    if fraction.numerator > 65535 or abs(float(fraction) * 1000 - duration_ms) > 0.5:
        raise ValueError(f"frame duration {duration_ms} ms cannot be written as an APNG delay")
    return fraction.numerator, fraction.denominator


def apng_bytes(frames: Iterable[Image.Image], durations: list[float], loop: int, exif: bytes = b"",
               icc: bytes = b"", text: dict[str, str] | None = None) -> bytes:
    """An animated PNG holding every frame (all the same size and mode) with its duration; ``loop`` plays, 0 forever.

    Frames are consumed one at a time, so only the output and one frame are in memory."""
    out = [SIGNATURE]
    sequence = 0
    for number, frame in enumerate(frames):
        encoded = png_bytes(frame, exif, icc, text) if number == 0 else png_bytes(frame)
        chunks = list(_chunks(encoded))
        if number == 0:
            header = [(k, b) for k, b in chunks if k not in (b"IDAT", b"IEND")]
            out.append(_chunk(header[0][0], header[0][1]))  # IHDR first
            out.append(_chunk(b"acTL", struct.pack(">II", len(durations), loop)))
            out += [_chunk(k, b) for k, b in header[1:]]
        width, height = frame.size
        num, den = delay(durations[number])
        out.append(_chunk(b"fcTL", struct.pack(">IIIIIHHBB", sequence, width, height, 0, 0, num, den, 0, 0)))
        sequence += 1
        for kind, body in chunks:
            if kind != b"IDAT":
                continue
            if number == 0:
                out.append(_chunk(b"IDAT", body))
            else:
                out.append(_chunk(b"fdAT", struct.pack(">I", sequence) + body))
                sequence += 1
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)

"""PNG files at the chunk level: split a file into chunks, and write one from samples plus kept chunks.

Lossless items keep every chunk of a PNG except the pixel data (IHDR, IDAT, IEND are rebuilt), so a rebuilt PNG
carries the original's palette, transparency, colour and text chunks byte for byte and in their original order;
only the compressed pixel data (and the interlace flag: rebuilt files are not interlaced) differ.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import imagecodecs
import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Colour type -> samples per pixel (PNG specification, IHDR).
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
REBUILT = (b"IHDR", b"IDAT", b"IEND")


class PngError(ValueError):
    """Not a well-formed PNG (bad signature, truncated chunk, CRC mismatch)."""


@dataclass(frozen=True)
class Header:
    width: int
    height: int
    bit_depth: int
    colour_type: int
    interlace: int


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The (type, payload) pairs of a PNG file, CRCs checked; everything after IEND is refused."""
    if not data.startswith(SIGNATURE):
        raise PngError("not a PNG signature")
    out, pos = [], len(SIGNATURE)
    while pos < len(data):
        if pos + 8 > len(data):
            raise PngError("truncated chunk header")
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            raise PngError(f"truncated {kind!r} chunk")
        payload = data[pos + 8:pos + 8 + length]
        if zlib.crc32(kind + payload) != struct.unpack(">I", data[end - 4:end])[0]:
            raise PngError(f"CRC mismatch in {kind!r} chunk")
        out.append((kind, payload))
        pos = end
        if kind == b"IEND":
            break
    if pos != len(data) or not out or out[-1][0] != b"IEND":
        raise PngError("data after IEND or no IEND")
    return out


def header(parts: list[tuple[bytes, bytes]]) -> Header:
    if not parts or parts[0][0] != b"IHDR" or len(parts[0][1]) != 13:
        raise PngError("first chunk is not IHDR")
    w, h, depth, ctype, _comp, _filt, interlace = struct.unpack(">IIBBBBB", parts[0][1])
    return Header(w, h, depth, ctype, interlace)


def kept_chunks(parts: list[tuple[bytes, bytes]]) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """Chunks to keep verbatim: (those before the first IDAT, those after the last IDAT)."""
    idat = [i for i, (kind, _) in enumerate(parts) if kind == b"IDAT"]
    if not idat:
        raise PngError("no IDAT chunk")
    before = [c for c in parts[:idat[0]] if c[0] not in REBUILT]
    after = [c for c in parts[idat[-1] + 1:] if c[0] not in REBUILT]
    return before, after


def chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _idat(samples: np.ndarray, bit_depth: int) -> bytes:
    """zlib stream of the filtered rows. 8/16-bit layouts go through libpng (adaptive filters); sub-byte layouts
    (1/2/4-bit palettes, 1-bit grey) are packed here with filter 0, as they are small and flat."""
    if bit_depth >= 8:
        encoded = imagecodecs.png_encode(np.ascontiguousarray(samples if samples.shape[2] > 1 else samples[:, :, 0]))
        return b"".join(p for kind, p in chunks(encoded) if kind == b"IDAT")
    height, width = samples.shape[:2]
    per_byte = 8 // bit_depth
    padded = np.zeros((height, -(-width // per_byte) * per_byte), np.uint8)
    padded[:, :width] = samples[:, :, 0]
    groups = padded.reshape(height, -1, per_byte)
    shifts = (np.arange(per_byte - 1, -1, -1) * bit_depth).astype(np.uint8)
    packed = np.bitwise_or.reduce(groups << shifts, axis=2).astype(np.uint8)
    rows = np.concatenate([np.zeros((height, 1), np.uint8), packed], axis=1)
    return zlib.compress(rows.tobytes(), 9)


def write(samples: np.ndarray, bit_depth: int, colour_type: int,
          before: list[tuple[bytes, bytes]], after: list[tuple[bytes, bytes]]) -> bytes:
    """A non-interlaced PNG of ``samples`` ((H, W, C) uint8 or big-endian-meaning uint16 values) with the kept
    chunks around the pixel data."""
    height, width = samples.shape[:2]
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    parts = [SIGNATURE, chunk(b"IHDR", ihdr)]
    parts += [chunk(k, p) for k, p in before]
    parts.append(chunk(b"IDAT", _idat(samples, bit_depth)))
    parts += [chunk(k, p) for k, p in after]
    parts.append(chunk(b"IEND", b""))
    return b"".join(parts)

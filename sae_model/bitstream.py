"""saepress bitstream container, shared by every format version (formats/ holds the payloads).

All integers are little-endian. A stream is::

    offset size  field
    0      4     magic b"SAEP"
    4      1     format version (5; 4 before v5's DC order, 3 before v4's contexts, 2 before prediction and restoration, 1 before the compiled coder)
    5      32    model fingerprint: sha256 of the model's weights file
    37     4     width  (u32, 1..MAX_SIDE)
    41     4     height (u32, 1..MAX_SIDE)
    45     1     mode of the decoded image: 0=L 1=LA 2=RGB 3=RGBA
    46     1     source mode code (see SOURCE_MODES; what the input was before conversion)
    47     1     flags: bit0 chroma 4:2:0, bit1 16-bit input reduced to 8 bits,
                 bit2 CMYK converted to RGB, bit3 EXIF orientation applied
    48     1     quality (0..100, informative; the decoder uses only the fields below)
    49     2     step16: luma quantiser step in 1/16 sample units (1..65535)
    51     1     chroma step ratio in 1/64 (1..255)
    52     1     DC (block mean) step ratio in 1/64 of the step (1..255)
    53     1     reconstruction bias in 1/256 of a step (0..127)
    54     2     tile size in pixels (multiple of 16, 16..4096)
    56     4     EXIF length   (u32)
    60     4     ICC length    (u32)
    64     4     alpha length  (u32)
    68     4     payload length (u32)
    72     ...   EXIF bytes, ICC bytes, alpha section, payload
    end-4  4     CRC32 of every byte before it

Every length is checked against the real stream length before anything is allocated, and
width*height is capped by MAX_PIXELS (Codec.decode's max_pixels caps it lower). The alpha section is the alpha plane, each row
left-differenced mod 256, zlib-compressed. The payload holds the tiles (tile x tile pixels,
raster order; tile_rects), each a u32 byte count followed by that many bytes (v3 puts its
prediction tools and restoration section before them); what those bytes hold is the format
version's: sae_model/formats/v<N>.py.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from .errors import CorruptStreamError, UnsupportedVersionError

MAGIC = b"SAEP"
FORMAT_VERSION = 5  # written; every version up to it is read (formats.DECODERS)
READABLE_VERSIONS = tuple(range(1, FORMAT_VERSION + 1))
MAX_SIDE = 1 << 20
MAX_PIXELS = 1 << 28
MODES = ("L", "LA", "RGB", "RGBA")
SOURCE_MODES = ("L", "LA", "RGB", "RGBA", "P", "PA", "CMYK", "I;16", "I", "F", "1", "YCbCr", "other")
FLAG_SUBSAMPLED, FLAG_REDUCED16, FLAG_CMYK, FLAG_ORIENTED = 1, 2, 4, 8

_HEAD = struct.Struct("<4sB32sIIBBBBHBBBHIIII")
HEADER_SIZE = _HEAD.size  # 72


@dataclass(frozen=True)
class Header:
    format_version: int
    fingerprint: str
    width: int
    height: int
    mode: str
    source_mode: str
    flags: int
    quality: int
    step16: int
    chroma_ratio64: int
    dc_ratio64: int
    bias256: int
    tile: int

    @property
    def subsampled(self) -> bool:
        return bool(self.flags & FLAG_SUBSAMPLED)


@dataclass(frozen=True)
class Stream:
    header: Header
    exif: bytes
    icc: bytes
    alpha: bytes
    payload: bytes


def write(header: Header, exif: bytes, icc: bytes, alpha: bytes, payload: bytes) -> bytes:
    """The stream: every field of `header`, the section lengths from the sections, the CRC."""
    head = _HEAD.pack(
        MAGIC, header.format_version, bytes.fromhex(header.fingerprint), header.width, header.height,
        MODES.index(header.mode), SOURCE_MODES.index(header.source_mode), header.flags,
        header.quality, header.step16, header.chroma_ratio64, header.dc_ratio64, header.bias256,
        header.tile, len(exif), len(icc), len(alpha), len(payload))
    body = b"".join((head, exif, icc, alpha, payload))
    return body + struct.pack("<I", zlib.crc32(body))


def read_header(data: bytes) -> Header:
    """Parse and validate the fixed header (no CRC check, no model needed)."""
    return _read_head(data)[0]


def _read_head(data: bytes) -> tuple[Header, tuple[int, int, int, int]]:
    """The header and the section lengths (EXIF, ICC, alpha, payload)."""
    data = bytes(data[:HEADER_SIZE]) if not isinstance(data, bytes) else data
    if len(data) < 5 or data[:4] != MAGIC:
        raise CorruptStreamError("not a saepress stream (bad magic)")
    if data[4] not in READABLE_VERSIONS:
        raise UnsupportedVersionError(f"format version {data[4]} (this library reads {READABLE_VERSIONS})")
    if len(data) < HEADER_SIZE:
        raise CorruptStreamError("truncated header")
    (_, version, fp, w, h, mode, smode, flags, quality, step16, cr, dcr, bias, tile,
     lexif, licc, lalpha, lpay) = _HEAD.unpack_from(data)
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE and w * h <= MAX_PIXELS):
        raise CorruptStreamError(f"bad size {w}x{h}")
    if mode >= len(MODES) or smode >= len(SOURCE_MODES) or flags >= 16 or quality > 100:
        raise CorruptStreamError("bad mode/flags/quality field")
    if step16 < 1 or cr < 1 or dcr < 1 or bias > 127 or tile % 16 or not 16 <= tile <= 4096:
        raise CorruptStreamError("bad coding parameters")
    return (Header(version, fp.hex(), w, h, MODES[mode], SOURCE_MODES[smode], flags, quality,
                   step16, cr, dcr, bias, tile), (lexif, licc, lalpha, lpay))


def parse(data: bytes) -> Stream:
    """Validate header, lengths and CRC; split the sections."""
    header, lengths = _read_head(data)
    total = HEADER_SIZE + sum(lengths) + 4
    if len(data) != total:
        raise CorruptStreamError(f"stream length {len(data)} != {total} (truncated or trailing bytes)")
    (crc,) = struct.unpack_from("<I", data, total - 4)
    if zlib.crc32(memoryview(data)[: total - 4]) != crc:
        raise CorruptStreamError("CRC mismatch")
    o = HEADER_SIZE
    parts = []
    for n in lengths:
        parts.append(bytes(data[o:o + n]))
        o += n
    return Stream(header, *parts)


# ---- alpha plane: lossless, zlib of row-differenced bytes ----

def encode_alpha(alpha: np.ndarray) -> bytes:
    diff = np.diff(alpha.astype(np.int16), axis=1, prepend=0).astype(np.uint8)
    return zlib.compress(diff.tobytes(), 9)


def decode_alpha(blob: bytes, height: int, width: int) -> np.ndarray:
    d = zlib.decompressobj()
    try:
        raw = d.decompress(blob, height * width + 1)
    except zlib.error as e:
        raise CorruptStreamError(f"alpha plane: {e}") from None
    if len(raw) != height * width or not d.eof or d.unused_data:
        raise CorruptStreamError("alpha plane has the wrong size")
    diff = np.frombuffer(raw, np.uint8).reshape(height, width)
    return np.cumsum(diff, axis=1, dtype=np.uint8)


# ---- payload tiles ----

def tile_rects(width: int, height: int, tile: int):
    """(y0, x0, th, tw) of every tile, in payload order."""
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            yield y0, x0, min(tile, height - y0), min(tile, width - x0)


def pack_tiles(tiles: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(t)) + t for t in tiles)


def unpack_tiles(payload: bytes, count: int, word_aligned: bool = False) -> list[bytes]:
    """word_aligned: v1 tiles are whole 32-bit words."""
    out, o = [], 0
    for _ in range(count):
        if o + 4 > len(payload):
            raise CorruptStreamError("payload truncated (tile header)")
        (n,) = struct.unpack_from("<I", payload, o)
        o += 4
        if (word_aligned and n % 4) or o + n > len(payload):
            raise CorruptStreamError("payload truncated or misaligned tile")
        out.append(payload[o:o + n])
        o += n
    if o != len(payload):
        raise CorruptStreamError("trailing bytes after the last tile")
    return out

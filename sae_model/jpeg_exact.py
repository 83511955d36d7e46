"""Byte-exact JPEG recompression: JPEG XL's lossless JPEG transcoding (ISO/IEC 18181).

Stored item: a JPEG XL file (container with a ``jbrd`` JPEG-reconstruction box) as libjxl writes it for the
JPEG's DCT coefficients and markers. ``rebuild`` gives back the original file byte for byte; JPEG XL decoders
that ignore ``jbrd`` still show the same picture. ``recompress`` decodes every result back and compares it with
the input before returning it, so an item that would not come back exactly is refused, never stored.

Refused (``NotExactError``, the message is the reason; the caller keeps such a file verbatim):
- not a JPEG, or a frame type other than baseline / extended / progressive Huffman (arithmetic-coded, lossless
  or hierarchical JPEGs: SOF3, SOF5-7, SOF9-15);
- anything libjxl cannot transcode (CMYK / YCCK / four components, malformed ICC or marker segments);
- a result that is not byte-identical to the input, or not smaller than it.
Bytes after the EOI marker are kept when libjxl reconstructs them exactly (the comparison decides).

Exactness hash: sha256 of the JPEG bytes ``rebuild`` returns, which equals the image id.
"""
from __future__ import annotations

import hashlib

import imagecodecs

from .errors import CorruptStreamError, NotExactError

ENGINE = "jpegxl-jbrd"
# SOF markers of the Huffman-coded DCT frames libjxl can transcode (ITU T.81 table B.1).
HUFFMAN_SOF = {0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive"}
OTHER_SOF = {0xC3: "lossless", 0xC5: "hierarchical", 0xC6: "hierarchical progressive",
             0xC7: "hierarchical lossless", 0xC9: "arithmetic-coded", 0xCA: "arithmetic-coded progressive",
             0xCB: "arithmetic-coded lossless", 0xCD: "arithmetic-coded hierarchical",
             0xCE: "arithmetic-coded hierarchical progressive", 0xCF: "arithmetic-coded hierarchical lossless"}
# Marker segments without a length field.
_STANDALONE = {0x01, *range(0xD0, 0xD8)}


def frame_type(data: bytes) -> str:
    """The JPEG's frame type (``baseline``, ``progressive``, ...), read from its first SOF marker."""
    if not data.startswith(b"\xff\xd8"):
        raise NotExactError("not a JPEG file (no SOI marker)")
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise NotExactError(f"malformed JPEG marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in HUFFMAN_SOF:
            return HUFFMAN_SOF[marker]
        if marker in OTHER_SOF:
            raise NotExactError(f"{OTHER_SOF[marker]} JPEG (SOF{marker - 0xC0}) cannot be transcoded; kept verbatim")
        if marker in (0xDA, 0xD9):
            break
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    raise NotExactError("no frame header (SOF) before the scan data")


def recompress(data: bytes) -> bytes:
    """The JPEG XL transcoding of the JPEG file ``data``, checked to rebuild it byte for byte."""
    kind = frame_type(data)
    try:
        stored = imagecodecs.jpegxl_encode_jpeg(data)
    except imagecodecs.JpegxlError as e:
        raise NotExactError(f"JPEG XL cannot transcode this {kind} JPEG ({e}); CMYK and malformed marker "
                            "segments are kept verbatim") from None
    try:
        back = imagecodecs.jpegxl_decode_jpeg(stored)
    except imagecodecs.JpegxlError as e:
        raise NotExactError(f"the transcoded {kind} JPEG does not decode back ({e})") from None
    if back != data:
        raise NotExactError(f"the transcoded {kind} JPEG does not rebuild byte for byte")
    if len(stored) >= len(data):
        raise NotExactError(f"recompression saves nothing on this {kind} JPEG ({len(stored)} >= {len(data)} bytes)")
    return stored


def rebuild(stored: bytes) -> bytes:
    """The original JPEG file of a stored item."""
    try:
        return imagecodecs.jpegxl_decode_jpeg(stored)
    except (imagecodecs.JpegxlError, RuntimeError, ValueError) as e:  # libjxl's errors on a damaged stream
        raise CorruptStreamError(f"JPEG-exact item does not decode: {e}") from None


def exact_sha256(jpeg: bytes) -> str:
    return hashlib.sha256(jpeg).hexdigest()

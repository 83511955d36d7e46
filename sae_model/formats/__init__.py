"""One module per format version, behind a dispatch on the header's format_version.

The container (header, metadata, alpha, tile framing, CRC) is bitstream.py, shared by every
version; a format module says what the payload's tiles hold: decode_pixels(codec, header,
payload) yields (y0, x0, tile pixels (th, tw, 1 or 3) uint8) tile by tile, and for the version written now also
encode_payload(codec, header, tiles, settings) -> payload bytes. A new version: a new module, an entry in
DECODERS, and bitstream.FORMAT_VERSION raised (tests/golden/make_golden.py then writes its
golden streams).
"""

from __future__ import annotations

from .. import bitstream
from . import v1, v2, v3, v4, v5

DECODERS = {1: v1, 2: v2, 3: v3, 4: v4, 5: v5}
WRITER = DECODERS[bitstream.FORMAT_VERSION]


def decoder(version: int):
    """The module decoding payloads of `version` (bitstream.read_header checked it is readable)."""
    return DECODERS[version]

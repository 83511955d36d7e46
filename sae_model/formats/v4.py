"""Format v4 payload (format v5 codes its block means another way: formats/v5.py): format
v3's payload, byte for byte the same layout, with the symbol layer's v4 contexts
(blockcoder.py, contexts=V4).

Payload: the tools byte, the restoration section and the tiles exactly as formats/v3.py
documents them, and the same reconstruction. Each tile's range-coder stream holds the same
symbols in the same order as v3; what differs is the context each is coded under:
  - eob: one block at a time, under the eobs of the blocks above and to the left (16 contexts
    instead of 4, above only), its models starting from the model file's `eob` table (learned
    with the model: pretrained.fit_tables) instead of uniform counts;
  - AC: the activity buckets v3 leaves empty are used: no recent nonzero level, the band that
    is the block's last, and how far the neighbouring blocks' ends of block reach past the band
    (instead of left + top sums of earlier bands);
  - DC: blocks without AC are a bucket of their own.
A model fitted before v4 (no `eob` table) still codes v4, its eob models starting uniform.
"""

from __future__ import annotations

from .. import bitstream, blockcoder
from . import v3


def encode_payload(codec, hd: bitstream.Header, tiles, settings) -> bytes:
    return v3.encode_payload(codec, hd, tiles, settings, blockcoder.V4)


def decode_tiles(codec, hd: bitstream.Header, payload: bytes):
    return v3.decode_tiles(codec, hd, payload, blockcoder.V4)

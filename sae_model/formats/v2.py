"""Format v2 payload (read only; written before v3 added prediction and restoration): what a
tile's bytes hold and how they become pixels.

Each tile's payload bytes (bitstream.py frames them, raster order) are the output of
rangecoder.py's byte-oriented range coder for the symbols blockcoder.py lays out: per plane
(Y, then Cb, Cr; planes.tile_planes) the eobs and members block row by block row, the AC levels
band by band, then the DC grid; adaptive models start afresh with each tile from the model's
count tables (tables.py).

Reconstruction, all integer (identical on every machine): postfilter.inverse_transform and
postfilter.deblock per plane, then postfilter.to_rgb (4:2:0 upsampling and YCbCr -> RGB) or
postfilter.to_grey into the output.
"""

from __future__ import annotations

from .. import bitstream, blockcoder, postfilter
from ..planes import dc_origin, prior_buckets, tile_planes


def decode_tiles(codec, hd: bitstream.Header, payload: bytes):
    """Yield (y0, x0, (th, tw, 1 or 3) uint8 pixels) of each tile of a v2 payload."""
    arrays = codec.arrays
    nc = 1 if hd.mode in ("L", "LA") else 3
    rects = list(bitstream.tile_rects(hd.width, hd.height, hd.tile))
    tiles = bitstream.unpack_tiles(payload, len(rects))
    for (y0, x0, th, tw), data in zip(rects, tiles):
        dec = blockcoder.TileDecoder(codec.models, data, blockcoder.V3)
        rec = []
        for pc, s16, hb, wb in tile_planes(nc, hd.subsampled, th, tw, hd.step16, hd.chroma_ratio64):
            members, Q, dcq = dec.plane(pc, hb, wb, prior_buckets(arrays.sigma16, s16),
                                        dc_origin(s16, hd.dc_ratio64))
            rec.append(postfilter.reconstruct(arrays.basis_t, s16, hd.dc_ratio64, hd.bias256, hb, wb,
                                              members, Q, dcq))
        yield y0, x0, postfilter.pixels(rec, hd.subsampled, th, tw)



"""Format v3 payload (format v4 writes it with other contexts: formats/v4.py): v2's symbols, coded after prediction, then a restoration filter.

Payload: one byte of prediction tools (bit 0 DC-smooth, bit 1 chroma from luma; the encoder
leaves a tool out only for comparisons), the restoration section (restore.py: per plane a
class mask and int8 weights), then the tiles (bitstream.py frames them, raster order), each the output of rangecoder.py's coder
for the symbols blockcoder.py lays out, exactly as in v2: per plane (Y, then Cb, Cr;
planes.tile_planes) the eobs and members block row by block row, the AC levels band by band,
then the DC grid; adaptive models start afresh with each tile from the model's count tables.
What differs is what the levels mean: they code each block minus a prediction from values
decoded before it (predict.py), so the same symbol layer spends fewer bits.

Reconstruction of a tile, all integer (identical on every machine), plane by plane in the
order Y, Cb, Cr: postfilter.inverse_transform, + predict.add_smooth and, on the chroma planes
of a colour image, + predict.add_cfl from the tile's deblocked luma (each when its tool bit is
set), then postfilter.deblock.
Then restore.apply on each plane with the image's filters (the chroma cross-component taps
read the deblocked, unfiltered luma at chroma resolution), then postfilter.to_rgb (4:2:0
upsampling and YCbCr -> RGB) or postfilter.to_grey.
"""

from __future__ import annotations

import numpy as np

from .. import bitstream, blockcoder, postfilter, predict, restore
from ..errors import CorruptStreamError
from ..planes import chroma_step16, dc_origin, prior_buckets, tile_planes

SMOOTH, CFL = 1, 2   # prediction tool bits
ALL_TOOLS = SMOOTH | CFL
FIT_STEP = 2  # the encoder fits the filters on every 2nd row and column


def tools(smooth: bool, cfl: bool) -> int:
    return (SMOOTH if smooth else 0) | (CFL if cfl else 0)


def prediction(tools, dcq, hb, wb, step16, dcr64, luma=None, sub=False) -> np.ndarray:
    """A plane's prediction (int64, 1/4096 samples) from its quantised means and, for a chroma
    plane of a colour image, the tile's deblocked luma."""
    P = np.zeros((hb * 8, wb * 8), np.int64)
    dc_unit = step16 * dcr64 * 4
    if tools & SMOOTH:
        predict.add_smooth(P, dcq, hb, wb, dc_unit, dcr64)
    if luma is not None and tools & CFL:
        predict.add_cfl(P, luma, sub, dcq, hb, wb, dc_unit, step16)
    return P


def reconstruct(tools, basis_t, step16, dcr64, bias256, hb, wb, members, Q, dcq, luma=None, sub=False):
    """One decoded, deblocked plane (int64, 1/4096 samples); luma: see prediction()."""
    p = postfilter.inverse_transform(basis_t, step16, dcr64, bias256, hb, wb, members, Q, dcq)
    if p is None:  # checked before predicting: the prediction assumes means in range
        raise CorruptStreamError("DC value out of range")
    p += prediction(tools, dcq, hb, wb, step16, dcr64, luma, sub)
    postfilter.deblock(p, step16)
    return p


def _tile_recs(tools, basis_t, hd: bitstream.Header, planes):
    """planes: per plane (step16, hb, wb, members, Q, dcq) -> deblocked planes."""
    recs = []
    for i, (s16, hb, wb, members, Q, dcq) in enumerate(planes):
        luma = recs[0] if i > 0 else None
        recs.append(reconstruct(tools, basis_t, s16, hd.dc_ratio64, hd.bias256, hb, wb, members, Q, dcq,
                                luma, hd.subsampled))
    return recs


def _filter_inputs(recs, sub):
    """Per plane: coarse() of its samples and of its cross-component plane."""
    c16 = [restore.coarse(r) for r in recs]
    if len(recs) == 1:
        return [(c16[0], c16[0])]
    aux = restore.coarse(restore.luma_at(recs[0], sub, recs[1].shape[0], recs[1].shape[1]))
    return [(c16[0], c16[0])] + [(c, aux) for c in c16[1:]]


def encode_payload(codec, hd: bitstream.Header, tiles, settings, contexts=blockcoder.V3) -> bytes:
    """tiles: per tile (raster order) its planes' levels, each with its source plane, analysed
    with settings (encoder.analyse, encoder.EncoderSettings); contexts: the symbol layer's
    (blockcoder.V4 for format v4, whose payload is v3's with other contexts)."""
    tl = tools(settings.smooth, settings.cfl)
    nc = 1 if hd.mode in ("L", "LA") else 3
    shapes = restore.layout(nc)
    A = [np.zeros((len(e) + 1, restore.ntaps(t, ct), restore.ntaps(t, ct))) for t, ct, e in shapes]
    b = [np.zeros((len(e) + 1, restore.ntaps(t, ct))) for t, ct, e in shapes]
    count = [np.zeros(len(e) + 1, np.int64) for _, _, e in shapes]
    data = []
    for levels in tiles:
        data.append(blockcoder.encode_tile(codec.models, levels, contexts))
        recs = _tile_recs(tl, codec.arrays.basis_t, hd, [(_step16(hd, p.pc), p.hb, p.wb, p.members, p.Q, p.dcq)
                                                     for p in levels])
        for i, (rec, (c16, a16), (taps, ctaps, edges), p) in enumerate(
                zip(recs, _filter_inputs(recs, hd.subsampled), shapes, levels)):
            restore.accumulate(rec, c16, a16, taps, ctaps, restore.block_classes(blockcoder.eob_of(p.Q), edges),
                               p.wb, p.source, FIT_STEP, A[i], b[i], count[i])
    filters = [restore.fit(A[i], b[i], count[i], settings.lam * (_step16(hd, min(i, 1)) / 16) ** 2 / FIT_STEP ** 2,
                           settings.restoration) for i in range(len(shapes))]
    return bytes([tl]) + restore.serialise(filters) + bitstream.pack_tiles(data)


def decode_tiles(codec, hd: bitstream.Header, payload: bytes, contexts=blockcoder.V3):
    """Yield (y0, x0, (th, tw, 1 or 3) uint8 pixels) of each tile of a v3 payload (contexts: see
    encode_payload)."""
    arrays = codec.arrays
    nc = 1 if hd.mode in ("L", "LA") else 3
    if not payload or payload[0] & ~ALL_TOOLS:
        raise CorruptStreamError("missing or unknown v3 prediction tools")
    tl = payload[0]
    filters, used = restore.parse(payload[1:], nc)
    used += 1
    rects = list(bitstream.tile_rects(hd.width, hd.height, hd.tile))
    tiles = bitstream.unpack_tiles(payload[used:], len(rects))
    for (y0, x0, th, tw), data in zip(rects, tiles):
        dec = blockcoder.TileDecoder(codec.models, data, contexts)
        planes = []
        for pc, s16, hb, wb in tile_planes(nc, hd.subsampled, th, tw, hd.step16, hd.chroma_ratio64):
            planes.append((s16, hb, wb) + dec.plane(pc, hb, wb, prior_buckets(arrays.sigma16, s16),
                                                     dc_origin(s16, hd.dc_ratio64)))
        recs = _tile_recs(tl, arrays.basis_t, hd, planes)
        if any(on.any() for _, on in filters):
            recs = [_restored(rec, inputs, shape, flt, pl) for rec, inputs, shape, flt, pl in
                    zip(recs, _filter_inputs(recs, hd.subsampled), restore.layout(nc), filters, planes)]
        yield y0, x0, postfilter.pixels(recs, hd.subsampled, th, tw)


def _restored(rec, inputs, shape, flt, plane):
    (c16, a16), (taps, ctaps, edges), (weights, on) = inputs, shape, flt
    if not on.any():
        return rec
    out = np.empty_like(rec)
    restore.apply(rec, c16, a16, taps, ctaps, restore.block_classes(blockcoder.eob_of(plane[4]), edges), plane[2],
                  weights, on, out)
    return out


def _step16(hd: bitstream.Header, pc: int) -> int:
    return hd.step16 if pc == 0 else chroma_step16(hd.step16, hd.chroma_ratio64)

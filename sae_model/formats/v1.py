"""Format v1 payload (read only; written before the compiled coder, by saepress <= 0.1).

Each tile's payload bytes (bitstream.py frames them) are whole 32-bit little-endian words of
constriction's range coder (queue variant), under static tables: the model's count tables as
they are (tables.py), or per-tile histograms sent as 5-bit levels (HIST_LEVELS, LEVEL_COUNT).
Symbols of one batch are decoded with one call per context, so a context depends only on
earlier batches. Signed values use -ESC..ESC; the escapes of a batch (bit length under the
`esc` table, then k-1 uniform low bits) follow the batch.

Per plane of a tile (Y, then Cb, Cr; planes.tile_planes), in this order:
  1. eob: histogram levels (NBANDS+1), then per block its eob (planes.py)
  2. members: histogram levels (K), then the member of every block with eob > 0
  3. AC bands t = 0..NBANDS-1: the levels of positions BANDS[t]..BANDS[t+1]-1 of every block
     with eob > t, grouped by AC context (planes.py; ac table)
  4. DC (quantised block means): the coarse grid at stride S (DPCM along the first column, then
     along each row), then for s = S/2..1 the centres, then the row and column edges of the
     stride-2s grid, each predicted by the rounded mean of its decoded neighbours (DC context,
     planes.py; dc table).
Reconstruction: postfilter.py's inverse transform and deblocking (shared with v2), then float
colour: planes / 4096, 4:2:0 chroma upsampled by imageio.upsample2, imageio.ycbcr_to_rgb (float32).
"""

from __future__ import annotations

import weakref

import constriction
import numpy as np

from .. import bitstream, imageio, postfilter
from ..errors import CorruptStreamError
from ..planes import (BANDS, N_ACTIVITY, N_EOB_BUCKET, N_NEIGHBOUR, N_SPREAD, N_TO_EOB, NBANDS, NPOS,
                      ModelArrays, dc_origin, prior_buckets, tile_planes)
from ..tables import ESC

_m = constriction.stream.model
HIST_LEVELS = 32
LEVEL_COUNT = np.array([0] + [int(round(2 ** (i / 2))) for i in range(HIST_LEVELS - 1)], np.int64)
_UNIFORM = _m.Uniform()
_HIST_UNIFORM = _m.Uniform(HIST_LEVELS)
_MODELS: "weakref.WeakKeyDictionary[ModelArrays, _Models]" = weakref.WeakKeyDictionary()


def decode_tiles(codec, hd: bitstream.Header, payload: bytes):
    """Yield (y0, x0, (th, tw, 1 or 3) uint8 pixels) of each tile of a v1 payload."""
    arrays = codec.arrays
    models = _MODELS.get(arrays)
    if models is None:
        models = _MODELS[arrays] = _Models(arrays)
    nc = 1 if hd.mode in ("L", "LA") else 3
    rects = list(bitstream.tile_rects(hd.width, hd.height, hd.tile))
    tiles = bitstream.unpack_tiles(payload, len(rects), word_aligned=True)
    for (y0, x0, th, tw), data in zip(rects, tiles):
        dec = _Decoder(models, data)
        rec = []
        for pc, s16, hb, wb in tile_planes(nc, hd.subsampled, th, tw, hd.step16, hd.chroma_ratio64):
            members, Q, dcq = _decode_plane(dec, arrays, pc, s16, hd.dc_ratio64, hb, wb)
            rec.append(postfilter.reconstruct(arrays.basis_t, s16, hd.dc_ratio64, hd.bias256, hb, wb,
                                              members, Q, dcq))
        yield y0, x0, _pixels(rec, hd.subsampled, th, tw)


def _pixels(rec: list, sub: bool, th: int, tw: int) -> np.ndarray:
    rec = [r / 4096.0 for r in rec]
    if len(rec) == 1:
        return np.clip(np.floor(rec[0][:th, :tw] + 0.5), 0, 255).astype(np.uint8)[:, :, None]
    if sub:
        rec[1:] = [imageio.upsample2(r) for r in rec[1:]]
    return imageio.ycbcr_to_rgb(*(r[:th, :tw] for r in rec))


class _Models:
    """constriction models of a model's count tables, built on first use."""

    def __init__(self, arrays: ModelArrays):
        self.t, self.K, self._cache = arrays.tables, arrays.K, {}

    def get(self, kind: str, pc: int, ctx: int):
        key = (kind, pc, ctx)
        m = self._cache.get(key)
        if m is None:
            counts = getattr(self.t, kind)[pc, ctx] if kind != "esc" else self.t.esc[pc]
            m = self._cache[key] = _m.Categorical(counts.astype(np.float64), perfect=False)
        return m


def _hist_model(levels: np.ndarray):
    counts = LEVEL_COUNT[levels].astype(np.float64)
    if counts.sum() == 0:
        counts[:] = 1.0
    return _m.Categorical(counts, perfect=False)


class _Decoder:
    def __init__(self, models: _Models, data: bytes):
        self.models = models
        self.rc = constriction.stream.queue.RangeDecoder(np.frombuffer(data, "<u4").astype(np.uint32))

    def histogram(self, count: int, size: int) -> np.ndarray:
        if size == 1:
            return np.zeros(count, np.int64)
        levels = self.rc.decode(_HIST_UNIFORM, size)
        used = np.flatnonzero(levels)
        if len(used) <= 1:
            return np.full(count, used[0] if len(used) else 0, np.int64)
        return self.rc.decode(_hist_model(levels), count).astype(np.int64)

    def signed(self, kind: str, pc: int, ctx: np.ndarray) -> np.ndarray:
        n = len(ctx)
        if n == 0:
            return np.zeros(0, np.int64)
        order = np.argsort(ctx, kind="stable")
        ctx_sorted = ctx[order]
        sym_sorted = np.empty(n, np.int64)
        for c, lo, hi in _groups(ctx_sorted):
            sym_sorted[lo:hi] = self.rc.decode(self.models.get(kind, pc, c), hi - lo)
        values = np.empty(n, np.int64)
        values[order] = sym_sorted - ESC
        esc = np.abs(values) >= ESC
        n_esc = int(esc.sum())
        if n_esc:
            k = self.rc.decode(self.models.get("esc", pc, 0), n_esc).astype(np.int64)
            excess = k.copy()  # k in {0, 1} means excess == k
            big = k >= 2
            if big.any():
                if k.max() > 30:
                    raise CorruptStreamError("escape too long")
                sizes = (1 << (k[big] - 1)).astype(np.int32)
                excess[big] = self.rc.decode(_UNIFORM, sizes).astype(np.int64) + sizes
            values[esc] = np.sign(values[esc]) * (ESC + excess)
        return values


def _groups(sorted_ctx: np.ndarray):
    bounds = np.flatnonzero(np.diff(sorted_ctx)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(sorted_ctx)]])
    for lo, hi in zip(starts.tolist(), ends.tolist()):
        yield int(sorted_ctx[lo]), lo, hi


def _bucket(v: np.ndarray, edges) -> np.ndarray:
    return np.searchsorted(np.asarray(edges), v, side="right")


def _decode_plane(dec: _Decoder, m: ModelArrays, pc: int, step16: int, dcr64: int, hb: int, wb: int):
    """(members, Q (nb, 63), dcq) of one plane."""
    nb = hb * wb
    Q = np.zeros((nb, NPOS + 2), np.int64)  # two leading zero columns: "previous positions" need no special case
    eob = dec.histogram(nb, NBANDS + 1)
    has_ac = eob > 0
    members = np.zeros(nb, np.int64)
    members[has_ac] = dec.histogram(int(has_ac.sum()), m.K)

    pb = prior_buckets(m.sigma16, step16)[members]  # (nb, 63)
    idx = np.arange(nb)
    row, col = idx // wb, idx % wb
    cumabs = np.zeros(nb, np.int64)
    nnz = np.zeros(nb, np.int64)
    for t in range(NBANDS):
        act = np.flatnonzero(eob > t)
        if act.size == 0:
            break
        s, e = int(BANDS[t]), int(BANDS[t + 1])
        recent = 2 * (np.abs(Q[act, s + 1]) + np.abs(Q[act, s])) + nnz[act]
        nbr = (np.where(col[act] > 0, cumabs[act - 1], 0)
               + np.where(row[act] > 0, cumabs[np.maximum(act - wb, 0)], 0))
        base = (_bucket(recent, (0, 2, 5, 11)) * N_NEIGHBOUR + _bucket(nbr, (0, 4))) * N_TO_EOB \
            + _bucket(eob[act] - 1 - t, (0, 2))
        ctx = (pb[act, s:e] * N_ACTIVITY + base[:, None]).ravel().astype(np.int16)  # int16: radix sort
        vals = dec.signed("ac", pc, ctx)
        Q[act, s + 2:e + 2] = vals.reshape(len(act), e - s)
        band = np.abs(Q[act, s + 2:e + 2])
        cumabs[act] += band.sum(1)
        nnz[act] += (band > 0).sum(1)

    dcq = _decode_dc(dec, pc, step16, dcr64, hb, wb, eob)
    return members, np.ascontiguousarray(Q[:, 2:]), dcq


def _decode_dc(dec, pc, step16, dcr64, hb, wb, eob):
    G = np.zeros((hb, wb), np.int64)
    eb = _bucket(eob.reshape(hb, wb), (0, 4))
    S = 1
    while S * 2 < max(hb, wb) and S < 8:
        S *= 2
    C = G[::S, ::S]
    r = dec.signed("dc", pc, eb[::S, ::S].ravel()).reshape(C.shape)
    first = dc_origin(step16, dcr64) + np.cumsum(r[:, 0])
    G[::S, ::S] = np.cumsum(np.concatenate([first[:, None], r[:, 1:]], axis=1), axis=1)
    s = S // 2
    while s >= 1:
        for stage, (i0, j0, offs) in enumerate(_stages(s)):
            I, J = np.meshgrid(np.arange(i0, hb, 2 * s), np.arange(j0, wb, 2 * s), indexing="ij")
            I, J = I.ravel(), J.ravel()
            if I.size == 0:
                continue
            _dc_stage(dec, pc, G, eb, I, J, offs, 1 + min(stage, 1))
        s //= 2
    return G.ravel()


def _stages(s):
    diag = ((-s, -s), (-s, s), (s, -s), (s, s))
    cross = ((-s, 0), (s, 0), (0, -s), (0, s))
    return ((s, s, diag), (0, s, cross), (s, 0, cross))


def _dc_stage(dec, pc, G, eb, I, J, offs, stage):
    hb, wb = G.shape
    total = np.zeros(I.size, np.int64)
    cnt = np.zeros(I.size, np.int64)
    hi = np.full(I.size, -(1 << 40), np.int64)
    lo = np.full(I.size, 1 << 40, np.int64)
    for di, dj in offs:
        ii, jj = I + di, J + dj
        ok = (ii >= 0) & (ii < hb) & (jj >= 0) & (jj < wb)
        v = G[np.clip(ii, 0, hb - 1), np.clip(jj, 0, wb - 1)]
        total += np.where(ok, v, 0)
        cnt += ok
        hi = np.where(ok, np.maximum(hi, v), hi)
        lo = np.where(ok, np.minimum(lo, v), lo)
    pred = (2 * total + cnt) // (2 * cnt)
    spread = _bucket(hi - lo, (0, 1, 2, 4, 8, 16, 32))
    ctx = (stage * N_SPREAD + spread) * N_EOB_BUCKET + eb[I, J]
    G[I, J] = pred + dec.signed("dc", pc, ctx)

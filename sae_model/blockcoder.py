"""Format v2-v4 symbol layer: one compiled pass codes (or decodes, or counts) a whole plane.

Symbol order of a tile's range-coder stream, per plane (Y, then Cb, Cr), every symbol under
an adaptive model (rangecoder.py) whose state carries over from plane to plane of the same
class (luma; chroma) and starts afresh with each tile. Every context depends only on symbols
of earlier batches, so each batch (a block row, a band, a DC stage) is one code_batch call:
  1. per block row: the end-of-block band eob of each block (0: no AC, else 1 + the last band
     holding a nonzero coefficient), context = the eob of the block above bucketed to 0, 1-2,
     3-5, >= 6; then the member of each block of the row with eob > 0 (no context: richer
     contexts measured worse, their models learn too slowly within a tile).
  2. AC bands t = 0..NBANDS-1, in each band the blocks with eob > t in raster order, each
     block's positions BANDS[t]..BANDS[t+1]-1 in order. Context = prior bucket of (member,
     position, step) * N_ACTIVITY + activity (planes.py: the v1 contexts, so one table set
     serves both).
  3. DC (quantised block means): the coarse grid at stride S by DPCM (left, or top for the
     first column, or mid-grey for the first), then for s = S/2..1 the centres, then the
     row and column edges of the stride-2s grid, each predicted by the rounded mean of its
     decoded neighbours; context = stage, neighbour spread, eob bucket (planes.py).
AC and DC values are signed (rangecoder.code_batch: ranks, escapes under one extra context
per kind, ESC_ROW). AC and DC models start from the model file's tables; eob and member
models from small uniform counts (UNIFORM_COUNT), so they adapt fast.

Format v4 (contexts=V4) codes the same symbols in the same order with richer contexts, every
index of the table layout in use (v2/v3 leave some buckets empty), so learned start tables
carry more of what a tile's models would otherwise have to learn:
  eob: one block at a time, context = bucket of the eob above * 4 + bucket of the eob to the
     left (N_EOB_CTX_V4), starting from the model file's `eob` table, not uniform counts;
  AC: activity = (recent * N_NEIGHBOUR + neighbour) * N_TO_EOB + to_eob with recent edges
     (1, 2, 5, 11), neighbour = how far the rounded mean eob of the 4 neighbouring blocks (every
     eob of the plane is known before the AC) reaches past this band: 0 (not), 1 (by 1-2 bands),
     2 (by more); to_eob edges (1, 3): 0 = this band is the block's last;
  DC: eob bucket edges (1, 4): a block without AC is its own bucket.

Format v5 (contexts=V5) codes v4's symbols in v4's order under v4's contexts, except step 3:
the DC grid block by block in raster order, each mean minus gap_predict (a gradient-adjusted
prediction from the means above and to the left), context = gradient bucket * N_EOB_BUCKET +
eob bucket; one block per code_batch call, as each prediction needs the mean just decoded.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import rangecoder as rc
from .errors import CorruptStreamError
from .planes import (BANDS, NBANDS, NPOS, N_AC_CTX, N_ACTIVITY, N_DC_CTX, N_EOB_BUCKET, N_NEIGHBOUR,
                     N_SPREAD, N_TO_EOB, PlaneLevels)
from .rangecoder import COUNT, DECODE, ENCODE
from .tables import ALPHABET, ESC, ESC_BITS

N_EOB_CTX = 4
N_EOB_CTX_V4 = 16
V3, V4, V5 = 0, 1, 2  # the contexts of code_plane: V3 for formats v2 and v3, V4 for v4, V5 for v5
UNIFORM_COUNT = 16
AC_ESC_ROW, DC_ESC_ROW = N_AC_CTX, N_DC_CTX  # the escape model: one row past the contexts
# rank r -> value: 0, 1, -1, 2, -2, ...; RANK_ORDER[r] is the v1 table column (value + ESC)
RANK_VALUE = np.array([0] + [(r + 1) // 2 * (1 if r % 2 else -1) for r in range(1, ALPHABET)])
RANK_ORDER = RANK_VALUE + ESC
MAX_BAND = int(np.diff(BANDS).max())
_DIAG = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], np.int64)
_CROSS = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]], np.int64)


@njit(cache=True)
def _edges4(v):  # v1 buckets: edges (0, 2, 5, 11), side="right"
    return 1 + (v >= 2) + (v >= 5) + (v >= 11)


@njit(cache=True)
def _bucket4(e):  # eob buckets 0, 1-2, 3-5, >= 6
    return 0 if e == 0 else (1 if e <= 2 else (2 if e <= 5 else 3))


@njit(cache=True)
def eob_of(Q):
    """Each block's end of block: 0 (no AC) or 1 + the band of its last nonzero level."""
    eob = np.zeros(Q.shape[0], np.int64)
    for b in range(Q.shape[0]):
        for p in range(Q.shape[1] - 1, -1, -1):
            if Q[b, p] != 0:
                t = 0
                while BANDS[t + 1] <= p:
                    t += 1
                eob[b] = t + 1
                break
    return eob


@njit(cache=True)
def code_plane(mode, contexts, st, buf, ac, dc, eobm, memm, hb, wb, pb, members, Q, dcq, origin):
    """contexts: V3 or V4; ac, dc, eobm, memm: models (counts, cum, meta) of this plane's class.
    members (nb,), Q (nb, 63), dcq (nb,): read when encoding/counting, written when decoding.
    pb: (K, 63) prior buckets of this plane's step; origin: the DC prediction of the first block."""
    ac_c, ac_cum, ac_m = ac
    eob_c, eob_cum, eob_m = eobm
    mem_c, mem_cum, mem_m = memm
    nb = hb * wb
    ctxs = np.empty(MAX_BAND * nb + 1, np.int64)  # a batch is at most one band of every block
    vals = np.empty(MAX_BAND * nb + 1, np.int64)
    eob = eob_of(Q) if mode != DECODE else np.zeros(nb, np.int64)
    for i in range(hb):
        row = i * wb
        for j in range(wb):
            ctxs[j] = _bucket4(eob[row - wb + j] if i > 0 else 0)
            vals[j] = eob[row + j]
        if contexts == V3:
            rc.code_batch(mode, st, buf, eob_c, eob_cum, eob_m, ctxs[:wb], vals[:wb], False, 0)
        else:  # the left block's eob must be decoded first: one block per call
            for j in range(wb):
                ctxs[j] = ctxs[j] * 4 + _bucket4(vals[j - 1] if j > 0 else 0)
                rc.code_batch(mode, st, buf, eob_c, eob_cum, eob_m, ctxs[j:j + 1], vals[j:j + 1], False, 0)
        n = 0
        for j in range(wb):
            eob[row + j] = vals[j]
        for j in range(wb):
            if eob[row + j] > 0:
                ctxs[n] = 0
                vals[n] = members[row + j]
                n += 1
        rc.code_batch(mode, st, buf, mem_c, mem_cum, mem_m, ctxs[:n], vals[:n], False, 0)
        n = 0
        for j in range(wb):
            if eob[row + j] > 0:
                members[row + j] = vals[n]
                n += 1
            else:
                members[row + j] = 0
        if st[rc.S_ERROR]:
            return

    cumabs = np.zeros(nb, np.int64)
    nnz = np.zeros(nb, np.int64)
    reach = _neighbour_eob(eob, hb, wb) if contexts == V4 else nnz  # V3 never reads it (one array type)
    active = np.arange(nb)  # blocks with eob > t, raster order, shrinking band by band
    n_active = nb
    for t in range(NBANDS):
        s, e = BANDS[t], BANDS[t + 1]
        kept = 0
        for a in range(n_active):
            b = active[a]
            if eob[b] > t:
                active[kept] = b
                kept += 1
        n_active = kept
        if n_active == 0:
            break
        n = 0
        for a in range(n_active):
            b = active[a]
            recent = nnz[b]
            if s >= 1:
                recent += 2 * abs(Q[b, s - 1])
            if s >= 2:
                recent += 2 * abs(Q[b, s - 2])
            to_eob = eob[b] - 1 - t
            if contexts == V3:
                nbr = (cumabs[b - 1] if b % wb > 0 else 0) + (cumabs[b - wb] if b >= wb else 0)
                base = (_edges4(recent) * N_NEIGHBOUR + 1 + (nbr >= 4)) * N_TO_EOB + 1 + (to_eob >= 2)
            else:
                # int(): numpy adds bools as a logical or, and the kernels must mean the same interpreted
                base = (((int(recent >= 1) + int(recent >= 2) + int(recent >= 5) + int(recent >= 11)) * N_NEIGHBOUR
                         + int(reach[b] > t) + int(reach[b] > t + 2)) * N_TO_EOB + int(to_eob >= 1) + int(to_eob >= 3))
            k = members[b]
            for p in range(s, e):
                ctxs[n] = pb[k, p] * N_ACTIVITY + base
                vals[n] = Q[b, p]
                n += 1
        rc.code_batch(mode, st, buf, ac_c, ac_cum, ac_m, ctxs[:n], vals[:n], True, AC_ESC_ROW)
        if st[rc.S_ERROR]:
            return
        n = 0
        for a in range(n_active):
            b = active[a]
            for p in range(s, e):
                v = vals[n]
                n += 1
                Q[b, p] = v
                cumabs[b] += abs(v)
                nnz[b] += v != 0
    if contexts == V5:
        _code_dc_raster(mode, st, buf, dc, hb, wb, eob, dcq, origin, ctxs, vals)
    else:
        _code_dc(mode, st, buf, dc, hb, wb, eob, dcq, origin, ctxs, vals, 0 if contexts == V3 else 1)


@njit(cache=True)
def _neighbour_eob(eob, hb, wb):
    """Per block the rounded mean eob of its (up to 4) neighbouring blocks."""
    out = np.empty(hb * wb, np.int64)
    for i in range(hb):
        for j in range(wb):
            total, cnt = 0, 0
            if i > 0:
                total += eob[(i - 1) * wb + j]
                cnt += 1
            if i < hb - 1:
                total += eob[(i + 1) * wb + j]
                cnt += 1
            if j > 0:
                total += eob[i * wb + j - 1]
                cnt += 1
            if j < wb - 1:
                total += eob[i * wb + j + 1]
                cnt += 1
            out[i * wb + j] = (2 * total + cnt) // (2 * cnt) if cnt else 0
    return out


@njit(cache=True)
def _code_dc(mode, st, buf, dc, hb, wb, eob, dcq, origin, ctxs, vals, eob_edge=0):
    """A block's eob bucket is (eob >= eob_edge) + (eob >= 4): V3 passes 0 (buckets 1, 2), V4 1."""
    dc_c, dc_cum, dc_m = dc
    S = 1
    while S * 2 < max(hb, wb) and S < 8:
        S *= 2
    G = dcq.reshape(hb, wb)
    n = 0
    for i in range(0, hb, S):
        for j in range(0, wb, S):
            pred = G[i, j - S] if j > 0 else (G[i - S, 0] if i > 0 else origin)
            ctxs[n] = int(eob[i * wb + j] >= eob_edge) + int(eob[i * wb + j] >= 4)  # stage 0, spread 0
            vals[n] = G[i, j] - pred
            n += 1
    rc.code_batch(mode, st, buf, dc_c, dc_cum, dc_m, ctxs[:n], vals[:n], True, DC_ESC_ROW)
    n = 0
    for i in range(0, hb, S):  # raster order: every prediction is already reconstructed
        for j in range(0, wb, S):
            pred = G[i, j - S] if j > 0 else (G[i - S, 0] if i > 0 else origin)
            G[i, j] = pred + vals[n]
            n += 1
    preds = np.empty(ctxs.size, np.int64)
    s = S // 2
    while s >= 1:
        for stage in range(3):
            offs = _DIAG if stage == 0 else _CROSS
            i0 = s if stage != 1 else 0
            j0 = s if stage != 2 else 0
            n = 0
            for i in range(i0, hb, 2 * s):
                for j in range(j0, wb, 2 * s):
                    total = 0
                    cnt = 0
                    hi = -(1 << 40)
                    lo = 1 << 40
                    for o in range(4):
                        ii, jj = i + s * offs[o, 0], j + s * offs[o, 1]
                        if 0 <= ii < hb and 0 <= jj < wb:
                            v = G[ii, jj]
                            total += v
                            cnt += 1
                            hi = max(hi, v)
                            lo = min(lo, v)
                    pred = (2 * total + cnt) // (2 * cnt) if cnt else 0
                    d = hi - lo
                    spread = 1 + (d >= 1) + (d >= 2) + (d >= 4) + (d >= 8) + (d >= 16) + (d >= 32)
                    e = eob[i * wb + j]
                    ctxs[n] = ((1 + min(stage, 1)) * N_SPREAD + spread) * N_EOB_BUCKET + int(e >= eob_edge) + int(e >= 4)
                    preds[n] = pred
                    vals[n] = G[i, j] - pred
                    n += 1
            rc.code_batch(mode, st, buf, dc_c, dc_cum, dc_m, ctxs[:n], vals[:n], True, DC_ESC_ROW)
            if st[rc.S_ERROR]:
                return
            n = 0
            for i in range(i0, hb, 2 * s):
                for j in range(j0, wb, 2 * s):
                    G[i, j] = preds[n] + vals[n]
                    n += 1
        s //= 2


# gradient-adjusted prediction (CALIC's GAP) thresholds on the DC grid's gradient difference
GAP_SHARP, GAP_STRONG, GAP_WEAK = 80, 32, 8


@njit(cache=True)
def gap_predict(G, i, j, origin):
    """Format v5's prediction of the block mean G[i, j] from the decoded means before it in
    raster order, and its context bucket 0..N_SPREAD-1 of the local gradient (integers only)."""
    hb, wb = G.shape
    if i == 0 and j == 0:
        return origin, 0
    W = G[i, j - 1] if j > 0 else G[i - 1, j]
    N = G[i - 1, j] if i > 0 else W
    NW = G[i - 1, j - 1] if i > 0 and j > 0 else N
    NE = G[i - 1, j + 1] if i > 0 and j + 1 < wb else N
    WW = G[i, j - 2] if j > 1 else W
    NN = G[i - 2, j] if i > 1 else N
    NNE = G[i - 2, j + 1] if i > 1 and j + 1 < wb else NE
    dh = abs(W - WW) + abs(N - NW) + abs(N - NE)  # horizontal gradient: an edge running down
    dv = abs(W - NW) + abs(N - NN) + abs(NE - NNE)
    b8 = 4 * (W + N) + 2 * (NE - NW)  # 8 x the smooth-surface prediction
    if dv - dh > GAP_SHARP:
        p8 = 8 * W
    elif dh - dv > GAP_SHARP:
        p8 = 8 * N
    elif dv - dh > GAP_STRONG:
        p8 = (b8 + 8 * W) // 2
    elif dv - dh > GAP_WEAK:
        p8 = (3 * b8 + 8 * W) // 4
    elif dh - dv > GAP_STRONG:
        p8 = (b8 + 8 * N) // 2
    elif dh - dv > GAP_WEAK:
        p8 = (3 * b8 + 8 * N) // 4
    else:
        p8 = b8
    act = abs(W - NW) + abs(N - NW) + abs(N - NE)
    bucket = 0
    while bucket < N_SPREAD - 1 and act >= (2 << bucket):
        bucket += 1
    return (p8 + 4) >> 3, bucket


@njit(cache=True)
def _code_dc_raster(mode, st, buf, dc, hb, wb, eob, dcq, origin, ctxs, vals):
    """Format v5's DC: block by block in raster order, each mean minus gap_predict's value,
    context = gradient bucket * N_EOB_BUCKET + eob bucket (edges 1, 4)."""
    dc_c, dc_cum, dc_m = dc
    G = dcq.reshape(hb, wb)
    for i in range(hb):
        for j in range(wb):
            pred, bucket = gap_predict(G, i, j, origin)
            e = eob[i * wb + j]
            ctxs[0] = bucket * N_EOB_BUCKET + int(e >= 1) + int(e >= 4)
            vals[0] = G[i, j] - pred
            rc.code_batch(mode, st, buf, dc_c, dc_cum, dc_m, ctxs[:1], vals[:1], True, DC_ESC_ROW)
            if st[rc.S_ERROR]:
                return
            G[i, j] = pred + vals[0]


class Models:
    """A codec's start-of-tile model state (built once per codec from its count tables)."""

    def __init__(self, ac: np.ndarray, dc: np.ndarray, esc: np.ndarray, eob: np.ndarray | None, K: int):
        """eob: (2, N_EOB_CTX_V4, NBANDS + 1) counts, format v4's eob start state; None (a model
        fitted before v4): small uniform counts, as v3 starts."""
        esc_rows = np.zeros((2, 1, ALPHABET), np.int64)
        esc_rows[:, 0, :ESC_BITS] = esc
        esc_start = rc.Model.start_counts(esc_rows, np.arange(ALPHABET))
        ac_dc = tuple(rc.Model(np.concatenate([rc.Model.start_counts(t, RANK_ORDER), esc_start], axis=1))
                      for t in (ac, dc))
        member = rc.Model.uniform((2, 1), K, UNIFORM_COUNT)
        self.kinds = {V3: ac_dc + (rc.Model.uniform((2, N_EOB_CTX), NBANDS + 1, UNIFORM_COUNT), member),
                      V4: ac_dc + (rc.Model.uniform((2, N_EOB_CTX_V4), NBANDS + 1, UNIFORM_COUNT) if eob is None
                                   else rc.Model(rc.Model.start_counts(eob, np.arange(NBANDS + 1))), member)}
        self.kinds[V5] = self.kinds[V4]  # v5 differs in the DC contexts only: the same table layout

    def fresh(self, contexts: int) -> list:
        """Per plane class: the 4 models code_plane takes, as private copies."""
        state = [m.fresh() for m in self.kinds[contexts]]
        return [tuple(tuple(a[pc] for a in m) for m in state) for pc in (0, 1)]


def encode_tile(models: Models, planes: list[PlaneLevels], contexts: int) -> bytes:
    """One tile's range-coder bytes."""
    symbols = sum(p.hb * p.wb for p in planes)
    capacity = 64 + 32 * symbols
    while True:
        st, buf = rc.new_encoder(), np.empty(capacity, np.uint8)
        state = models.fresh(contexts)
        for p in planes:  # members and dcq copied: coding writes back what a decoder would see
            code_plane(ENCODE, contexts, st, buf, *state[p.pc], p.hb, p.wb, p.pb, p.members.copy(), p.Q,
                       p.dcq.copy(), p.origin)
        rc.finish(st, buf)
        if not st[rc.S_ERROR] & rc.ERR_FULL:
            return buf[:st[rc.S_POS]].tobytes()
        capacity *= 4


class TileDecoder:
    def __init__(self, models: Models, data: bytes, contexts: int):
        self.contexts = contexts
        self.buf = np.frombuffer(data, np.uint8).copy()  # writable: one compiled kernel codes both ways
        self.st = rc.new_decoder(self.buf)
        self.state = models.fresh(contexts)

    def plane(self, pc, hb, wb, pb, origin):
        nb = hb * wb
        members, Q, dcq = np.zeros(nb, np.int64), np.zeros((nb, NPOS), np.int64), np.zeros(nb, np.int64)
        code_plane(DECODE, self.contexts, self.st, self.buf, *self.state[pc], hb, wb, pb, members, Q, dcq, origin)
        if self.st[rc.S_ERROR]:
            raise CorruptStreamError(f"payload does not decode (range coder error {int(self.st[rc.S_ERROR])})")
        return members, Q, dcq


class SymbolCounter:
    """Counts (context, symbol) pairs under the contexts of the written format (V5), in the
    model file's table layout: fits a model's tables."""

    def __init__(self, K: int):
        self.K = K
        self.counts = [np.zeros((2, n + 1, ALPHABET), np.int32) for n in (N_AC_CTX, N_DC_CTX)]
        self.eob = np.zeros((2, N_EOB_CTX_V4, NBANDS + 1), np.int32)

    def add(self, p: PlaneLevels) -> None:
        def tally(counts):  # COUNT mode touches only the counts
            return counts, np.zeros((1, 1), np.int32), np.zeros((1, 2), np.int32)
        code_plane(COUNT, V5, rc.new_encoder(), np.zeros(0, np.uint8), tally(self.counts[0][p.pc]),
                   tally(self.counts[1][p.pc]), tally(self.eob[p.pc]), tally(np.zeros((1, self.K), np.int32)),
                   p.hb, p.wb, p.pb, p.members.copy(), p.Q, p.dcq.copy(), p.origin)

    def tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ac, dc, esc) counts with columns in v1 order (value + ESC; bit length)."""
        ac, dc = (np.zeros(c[:, :-1].shape, np.int64) for c in self.counts)
        ac[..., RANK_ORDER] = self.counts[0][:, :-1]
        dc[..., RANK_ORDER] = self.counts[1][:, :-1]
        esc = (self.counts[0][:, -1, :ESC_BITS] + self.counts[1][:, -1, :ESC_BITS]).astype(np.int64)
        return ac, dc, esc

    def eob_table(self) -> np.ndarray:
        """(2, N_EOB_CTX_V4, NBANDS + 1) eob counts (column = eob)."""
        return self.eob.astype(np.int64)

"""Block structure shared by both formats, the encoder's analysis and the v1 plane decoder.

The encoder (analyse_plane) picks a member per block by rate-distortion cost and quantises;
blockcoder.py codes the result (format v2). Format v1 streams (read only) hold, per plane of a
tile's range-coder stream (constriction, static tables; see entropy.py), in this order:
  1. eob: 5-bit histogram levels (NBANDS+1), then per block 0 (no AC) or 1 + last band with a
     nonzero coefficient
  2. members: 5-bit histogram levels (K), then the member index of every block with eob > 0
  3. AC bands t = 0..NBANDS-1: coefficients of positions BANDS[t]..BANDS[t+1]-1 of every block
     with eob > t, grouped by context (ac table); the context uses the prior of (member,
     position, step), the block's own earlier bands, the left/top blocks' earlier bands and
     the distance to the block's eob
  4. DC (quantised block means): coarse grid at stride S (left/top DPCM), then for s = S/2..1
     the centres and edges of the stride-2s grid predicted by the rounded mean of their
     decoded neighbours (dc table; context = stage, neighbour spread, block eob).
Both formats then share postfilter.py's inverse transform and deblocking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from . import entropy

B = 8
NPOS = B * B - 1
BANDS = (0, 1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 31, 38, 46, 54, 63)
NBANDS = len(BANDS) - 1
NPRIOR = 16
N_AC_CTX = NPRIOR * 45
N_DC_CTX = 3 * 8 * 3
SEARCH_ROUNDING = 0.45  # deadzone quantiser standing in for RDO levels while choosing the member


@dataclass
class ModelArrays:
    """What the block coder needs from a model."""
    bases: np.ndarray       # (K, 64, 64) float32; column 0 is the constant atom, 1.. by variance
    basis_t: np.ndarray     # (K, 64, 64) int64: basis_t[k, j, p] = round(bases[k, p, j] * 2**14)
    sigma16: np.ndarray     # (K, 63) int64: coefficient RMS in 1/16 sample units
    tables: entropy.Tables
    bits: np.ndarray        # (2, NPRIOR, ESC+1) encoder-side rate proxy in bits per |q|

    @property
    def K(self) -> int:
        return self.bases.shape[0]


def prior_buckets(sigma16: np.ndarray, step16: int) -> np.ndarray:
    """Bucket b in 0..15 = #{b' in 1..15 : sigma/step >= 2**((b'-8)/2)}, integer arithmetic."""
    lhs = sigma16.astype(np.int64) ** 2 << 8
    pb = np.zeros(sigma16.shape, np.int64)
    for b in range(1, NPRIOR):
        pb += lhs >= (step16 * step16) << b
    return pb


def _bucket(v: np.ndarray, edges) -> np.ndarray:
    return np.searchsorted(np.asarray(edges), v, side="right")


def decode_v1(dec, m: ModelArrays, pc: int, step16: int, dcr64: int, hb: int, wb: int):
    """Decode one plane of a format-v1 tile; returns (members, Q (nb, 63), dcq)."""
    nb = hb * wb
    Q = np.zeros((nb, NPOS + 2), np.int64)  # two leading zero columns: "previous positions" need no special case
    eob = dec.histogram(nb, NBANDS + 1)
    # the member only matters (and is only coded) for blocks with AC coefficients
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
        s, e = BANDS[t], BANDS[t + 1]
        recent = 2 * (np.abs(Q[act, s + 1]) + np.abs(Q[act, s])) + nnz[act]
        nbr = (np.where(col[act] > 0, cumabs[act - 1], 0)
               + np.where(row[act] > 0, cumabs[np.maximum(act - wb, 0)], 0))
        base = (_bucket(recent, (0, 2, 5, 11)) * 3 + _bucket(nbr, (0, 4))) * 3 \
            + _bucket(eob[act] - 1 - t, (0, 2))
        ctx = (pb[act, s:e] * 45 + base[:, None]).ravel().astype(np.int16)  # int16: radix sort
        vals = dec.signed("ac", pc, ctx)
        Q[act, s + 2:e + 2] = vals.reshape(len(act), e - s)
        band = np.abs(Q[act, s + 2:e + 2])
        cumabs[act] += band.sum(1)
        nnz[act] += (band > 0).sum(1)

    dcq = _decode_dc_v1(dec, pc, step16, dcr64, hb, wb, eob)
    return members, np.ascontiguousarray(Q[:, 2:]), dcq


def dc_origin(step16: int, dcr64: int) -> int:
    d = step16 * dcr64  # DC step = d / 1024 samples; predict mid-grey (128) first
    return (128 * 1024 * 2 + d) // (2 * d)


def _decode_dc_v1(dec, pc, step16, dcr64, hb, wb, eob):
    G = np.zeros((hb, wb), np.int64)
    eb = _bucket(eob.reshape(hb, wb), (0, 4))
    S = 1
    while S * 2 < max(hb, wb) and S < 8:
        S *= 2
    # coarse grid: DPCM along the first column, then along each row (cumulative sums)
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
            _dc_stage_v1(dec, pc, G, eb, I, J, offs, 1 + min(stage, 1))
        s //= 2
    return G.ravel()


def _stages(s):
    diag = ((-s, -s), (-s, s), (s, -s), (s, s))
    cross = ((-s, 0), (s, 0), (0, -s), (0, s))
    return ((s, s, diag), (0, s, cross), (s, 0, cross))


def _dc_stage_v1(dec, pc, G, eb, I, J, offs, stage):
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
    ctx = (stage * 8 + spread) * 3 + eb[I, J]
    G[I, J] = pred + dec.signed("dc", pc, ctx)


def analyse_plane(X: np.ndarray, m: ModelArrays, pc: int, step16: int, dcr64: int,
                  bias256: int, rounding: float, lam: float, allowed=None, rdoq: bool = True):
    """Encoder: choose a member per block by rate-distortion cost and quantise.

    Returns members, Q (nb, 63) and the quantised block means.
    """
    H, W = X.shape
    hb, wb = H // B, W // B
    blocks = X.reshape(hb, B, wb, B).transpose(0, 2, 1, 3).reshape(hb * wb, B * B)
    mean = blocks.mean(1)
    dcq = np.rint(mean * 1024.0 / (step16 * dcr64)).astype(np.int64)
    xc = (blocks - mean[:, None]).astype(np.float32)
    inv_step = np.float32(16.0 / step16)
    bias = np.float32(bias256 / 256.0)
    esc = entropy.ESC
    # bits of level |q| at position j of member k: flat[offset[k, j] + min(|q|, ESC)]
    flat = m.bits[pc].astype(np.float32).ravel()
    offset = (prior_buckets(m.sigma16, step16) * (esc + 1)).astype(np.int32)
    ks = list(range(m.K)) if allowed is None else list(allowed)

    def quantise(k, rows, rdoq, rounding):
        """Levels of member k, with their error (in steps) and rate proxy (bits)."""
        c = xc[rows] @ m.bases[k, :, 1:]
        a = np.abs(c) * inv_step
        q = np.floor(a + np.float32(rounding))
        at = offset[k][None, :]
        r = flat[at + np.minimum(q, esc).astype(np.int32)]
        e = a - np.where(q > 0, q - bias, 0)
        if rdoq:  # per coefficient: keep q or q - 1, whichever has the lower D + lam * R
            lo = np.maximum(q - 1, 0)
            r_lo = flat[at + np.minimum(lo, esc).astype(np.int32)]
            e_lo = a - np.where(lo > 0, lo - bias, 0)
            down = e_lo * e_lo + lam * r_lo < e * e + lam * r
            q = np.where(down, lo, q)
            r = np.where(down, r_lo, r)
            e = np.where(down, e_lo, e)
        return c, q, r, e

    n = len(xc)
    D = np.empty((n, len(ks)), np.float32)
    R = np.empty((n, len(ks)), np.float32)
    NZ = np.empty((n, len(ks)), bool)
    search_rounding = np.float32(SEARCH_ROUNDING if rdoq else rounding)
    for i, k in enumerate(ks):
        _search_costs(xc @ m.bases[k, :, 1:], inv_step, search_rounding, bias, flat, offset[k], esc,
                      D[:, i], R[:, i], NZ[:, i])
    # member index cost: uniform first, then the frequencies this plane actually uses
    mbits = np.full(len(ks), np.log2(len(ks)), np.float32)
    for _ in range(2):
        J = D + lam * (R + NZ * mbits[None, :])   # distortion in step**2 units
        choice = J.argmin(1)
        used = choice[NZ[np.arange(n), choice]]
        freq = np.bincount(used, minlength=len(ks)) + 0.5
        mbits = (-np.log2(freq / freq.sum())).astype(np.float32)
    members = np.asarray(ks)[choice]
    Qbest = np.zeros((n, NPOS), np.int64)
    for i in np.unique(choice).tolist():
        sel = np.flatnonzero(choice == i)
        c, q, r, e = quantise(ks[i], sel, rdoq, rounding)
        if rdoq:
            q = _truncate(q, r, e, np.abs(c) * inv_step, lam, mbits[i])
        Qbest[sel] = (np.sign(c) * q).astype(np.int64)
    return members, Qbest, dcq


@njit(cache=True)
def _search_costs(c, inv_step, rounding, bias, flat, offset, esc, D, R, NZ):
    """Member search, one member: per block the squared error (steps**2), the rate proxy (bits of
    the levels up to the end of the band of the last nonzero one: later ones are not coded) and
    whether any level is nonzero, under deadzone quantisation; one pass, no temporaries."""
    for b in range(c.shape[0]):
        d = np.float32(0.0)
        r = np.float32(0.0)
        coded = np.float32(0.0)
        band = 0
        for j in range(c.shape[1]):
            if j == _BAND_STARTS[band + 1]:
                band += 1
            a = abs(c[b, j]) * inv_step
            q = np.floor(a + rounding)
            e = a - (q - bias) if q > 0 else a
            d += e * e
            r += flat[offset[j] + min(int(q), esc)]
            if q > 0:
                coded = r + _rest_of_band(flat, offset, j, _BAND_STARTS[band + 1])
        D[b], R[b], NZ[b] = d, coded, coded > 0


@njit(cache=True)
def _rest_of_band(flat, offset, j, end):
    """Bits of zero levels at positions j+1..end-1."""
    t = np.float32(0.0)
    for p in range(j + 1, end):
        t += flat[offset[p]]
    return t


_BAND_STARTS = np.array(BANDS, np.int64)
_BAND_ENDS = np.array(BANDS)


def _truncate(q, r, e, a, lam, member_bits):
    """Rate-distortion choice of each block's end of block among the band boundaries: keeping
    positions < E costs their error and bits, dropping the rest costs their energy (units of
    step**2; E = 0 also saves the member index). Only ever zeroes coefficients."""
    keep = np.cumsum(e * e + lam * r, axis=1)
    drop = np.cumsum((a * a)[:, ::-1], axis=1)[:, ::-1]
    J = np.empty((len(q), len(_BAND_ENDS)), np.float32)
    for i, E in enumerate(_BAND_ENDS.tolist()):
        J[:, i] = (keep[:, E - 1] + lam * member_bits if E else 0) + (drop[:, E] if E < NPOS else 0)
    end = _BAND_ENDS[J.argmin(1)]
    return np.where(np.arange(NPOS)[None, :] < end[:, None], q, 0)

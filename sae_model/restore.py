"""Format v3 restoration filter: a per-image least-squares (Wiener) correction after deblocking.

Each sample p of a decoded, deblocked plane (1/4096 samples) gets a correction computed on its
coarse copy c = clip(p >> 8, +-LIMIT) (1/16 samples, edges replicated):
    p += ((sum_k w_k * (c[x + d_k] + c[x - d_k] - 2 c[x]) + 64) >> 7) << 8
over the point-symmetric tap pairs d_k of a radius-2 diamond (6 pairs); chroma planes add the
same 6 pairs on the decoded luma at chroma resolution (luma_at: 2x2 mean under 4:2:0), a
cross-component term. The weights w (int8, 1/128) depend on the class of the sample's block,
its end of block (luma: 0, 1-5, 6-11, >= 12; chroma: 0, >= 1). Every sum fits int32, and the
filter reads only unfiltered samples, so it is one vectorisable pass per plane.

The encoder fits the weights per image by least squares on its own reconstruction (normal
equations summed sequentially: the same input gives the same bytes on any thread count) and
keeps a class's filter only when the estimated squared-error reduction pays for its bytes at
the encoder's lambda.

Serialised (start of the v3 payload): per plane (Y, then Cb, Cr of a colour image) one byte,
bit c set = class c filtered, then for each set class its weights as int8.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .errors import CorruptStreamError

SHIFT = 7            # weights in 1/128
MAX_W = 127
MIN_SAMPLES = 64     # fitted samples per weight before a class's filter may be used
RIDGE = 1e-3         # of the mean feature energy: keeps nearly collinear taps from blowing up
B = 8
LIMIT = 1 << 15      # coarse samples are clipped to +-LIMIT/16 samples: sums stay below 2**31
R = 2                # largest tap offset: the coarse planes are padded by R


def _half_diamond(r):
    return np.array([(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)
                     if abs(dy) + abs(dx) <= r and (dy, dx) > (0, 0)], np.int64)


TAPS = _half_diamond(R)
NO_TAPS = np.zeros((0, 2), np.int64)
LUMA_EOB_EDGES = np.array([1, 6, 12], np.int64)   # class = #{edges <= eob}
CHROMA_EOB_EDGES = np.array([1], np.int64)


def layout(nc: int):
    """Per plane: (own taps, cross-component taps, class edges)."""
    luma = (TAPS, NO_TAPS, LUMA_EOB_EDGES)
    return [luma] if nc == 1 else [luma] + [(TAPS, TAPS, CHROMA_EOB_EDGES)] * 2


def ntaps(taps, ctaps) -> int:
    return len(taps) + len(ctaps)


def block_classes(eob: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.searchsorted(edges, eob, side="right").astype(np.int64)


@njit(cache=True)
def luma_at(luma, sub, H, W):
    """The decoded luma at chroma resolution (2x2 mean, rounded down, under 4:2:0)."""
    out = np.empty((H, W), np.int64)
    for y in range(H):
        for x in range(W):
            if sub:
                out[y, x] = (luma[2 * y, 2 * x] + luma[2 * y + 1, 2 * x] + luma[2 * y, 2 * x + 1]
                             + luma[2 * y + 1, 2 * x + 1]) >> 2
            else:
                out[y, x] = luma[y, x]
    return out


@njit(cache=True)
def coarse(p):
    """The plane as the filter reads it: 1/16 samples, int32, clipped, edge-padded by R."""
    H, W = p.shape
    out = np.empty((H + 2 * R, W + 2 * R), np.int32)
    for y in range(H + 2 * R):
        sy = min(max(y - R, 0), H - 1)
        for x in range(W + 2 * R):
            sx = min(max(x - R, 0), W - 1)
            out[y, x] = min(max(p[sy, sx] >> 8, -LIMIT), LIMIT)
    return out


@njit(cache=True)
def apply(p, c16, a16, taps, ctaps, cls, wb, weights, on, out):
    """out = plane p (int64) + its correction; c16 = coarse(p), a16 = coarse(cross-component
    plane) (unused without ctaps); cls (nb,) block classes, weights (ncls, ntaps) int64, on
    (ncls,) bool. Per block row the weights are laid out per sample, then each tap is one pass
    over the row."""
    H, W = out.shape
    nt, nc = taps.shape[0], ctaps.shape[0]
    wrow = np.zeros((nt + nc, W), np.int32)
    acc = np.empty(W, np.int32)
    for y in range(H):
        if y % B == 0:
            for x in range(W):
                c = cls[(y >> 3) * wb + (x >> 3)]
                for k in range(nt + nc):
                    wrow[k, x] = weights[c, k] if on[c] else 0
        acc[:] = 1 << (SHIFT - 1)
        _pass(c16, taps, wrow, 0, y + R, acc)
        _pass(a16, ctaps, wrow, nt, y + R, acc)
        for x in range(W):
            out[y, x] = p[y, x] + (np.int64(acc[x] >> SHIFT) << 8)


@njit(cache=True)
def _pass(src, taps, wrow, first, y, acc):
    W = acc.shape[0]
    for k in range(taps.shape[0]):
        dy, dx = taps[k, 0], taps[k, 1]
        w = wrow[first + k]
        a = src[y + dy, R + dx:R + dx + W]
        b = src[y - dy, R - dx:R - dx + W]
        m = src[y, R:R + W]
        for x in range(W):
            acc[x] += w[x] * (a[x] + b[x] - 2 * m[x])


@njit(cache=True)
def accumulate(p, c16, a16, taps, ctaps, cls, wb, target, step, A, b, count):
    """Encoder: add the normal equations of the correction (in samples) per class over every
    step-th row and column to A (upper triangle), b and count (samples). target: the source
    plane (samples)."""
    H, W = target.shape
    nt = taps.shape[0]
    n = nt + ctaps.shape[0]
    f = np.empty(n, np.float64)
    for y in range(0, H, step):
        for x in range(0, W, step):
            c = cls[(y >> 3) * wb + (x >> 3)]
            yy, xx = y + R, x + R
            for k in range(n):
                src = c16 if k < nt else a16
                dy, dx = (taps[k, 0], taps[k, 1]) if k < nt else (ctaps[k - nt, 0], ctaps[k - nt, 1])
                f[k] = (src[yy + dy, xx + dx] + src[yy - dy, xx - dx] - 2 * src[yy, xx]) / 16.0
            t = target[y, x] - p[y, x] / 4096.0
            count[c] += 1
            for i in range(n):
                b[c, i] += f[i] * t
                for j in range(i, n):
                    A[c, i, j] += f[i] * f[j]


def fit(A: np.ndarray, b: np.ndarray, count: np.ndarray, bits_cost: float, enabled: bool = True):
    """Quantised weights (ncls, n) and which classes pay: the squared-error gain 2 w.b - w.A.w
    against bits_cost per bit of their bytes (A, b, count as accumulate left them); a class
    needs MIN_SAMPLES per weight (fewer would fit noise), and weights out of the int8 range are
    scaled down together; none if not enabled."""
    ncls, n = b.shape
    A = np.triu(A) + np.transpose(np.triu(A, 1), (0, 2, 1))
    weights = np.zeros((ncls, n), np.int64)
    on = np.zeros(ncls, bool)
    for c in range(ncls if enabled else 0):
        tr = np.trace(A[c])
        if tr <= 0 or count[c] < MIN_SAMPLES * n:
            continue
        w = np.linalg.solve(A[c] + RIDGE * tr / n * np.eye(n), b[c]) * (1 << SHIFT)
        wq = np.rint(w * min(1.0, MAX_W / max(np.abs(w).max(), 1e-9)))
        wf = wq / (1 << SHIFT)
        if 2 * wf @ b[c] - wf @ A[c] @ wf > bits_cost * 8 * n:
            weights[c], on[c] = wq.astype(np.int64), True
    return weights, on


def serialise(filters) -> bytes:
    """filters: per plane (weights, on)."""
    out = bytearray()
    for weights, on in filters:
        out.append(sum(1 << c for c in range(len(on)) if on[c]))
        for c in np.flatnonzero(on):
            out += weights[c].astype(np.int8).tobytes()
    return bytes(out)


def parse(data: bytes, nc: int):
    """-> (per plane (weights, on), bytes used); CorruptStreamError on a short or bad section."""
    pos, filters = 0, []
    for taps, ctaps, edges in layout(nc):
        ncls, n = len(edges) + 1, ntaps(taps, ctaps)
        if pos >= len(data):
            raise CorruptStreamError("truncated restoration section")
        mask = data[pos]
        pos += 1
        if mask >> ncls:
            raise CorruptStreamError("restoration section names a filter class that does not exist")
        weights, on = np.zeros((ncls, n), np.int64), np.zeros(ncls, bool)
        for c in range(ncls):
            if mask >> c & 1:
                if pos + n > len(data):
                    raise CorruptStreamError("truncated restoration section")
                weights[c] = np.frombuffer(data, np.int8, n, pos)
                on[c] = True
                pos += n
        filters.append((weights, on))
    return filters, pos

"""Decoder-side synthesis, compiled: inverse transform, deblocking (both normative in v1 and v2)
and the v2 integer colour conversion.

Inverse transform: level q at AC position j of a block with member k dequantises to
deq = clip((256 q - sign(q) bias256) * step16, +-2**31) (units of 1/4096 sample); the block is
floor((sum_j deq_j * round(2**14 B_k[:, 1 + j]) + 2**13) / 2**14) + dcq * step16 * dcr64 * 4,
all int64 with partial sums below 2**52.

Deblocking: quantising 8x8 blocks independently leaves steps at block edges, mostly from the
block mean and the zeroed low-frequency coefficients at low rates. Across each block edge
(vertical edges first, then horizontal ones, on the plane's own block grid) the four samples
p3..p0 | q0..q3 are filtered when the edge looks like a quantisation step rather than an
image edge:

    on     = |q0 - p0| < A  and |p1 - p0| < Bt  and |q1 - q0| < Bt
    strong = on and |p2 - p0| < Bt and |q2 - q0| < Bt and |q0 - p0| < A/4 + 2 samples
    strong: p0..p2 and q0..q2 get H.264's strong luma filter (3 taps per side)
    on:     p0 += d, q0 -= d with d = clip(((q0 - p0) * 4 + (p1 - q1) + 4) >> 3, -tc, tc)

A, Bt and tc are proportional to the plane's quantiser step, so the filter fades out at high
quality. Samples are integers in 1/4096 sample units and every operation is an integer add or
shift, so the output is identical on every machine.

Colour (v2): 4:2:0 chroma is upsampled with the separable 3/4-1/4 filter (centred like the
encoder's 2x2 mean, edges replicated) as one 2-D integer filter (9, 3, 3, 1)/16; then full-range
JFIF YCbCr -> RGB with 16-bit fixed-point coefficients, each output rounded half up and clipped.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .errors import CorruptStreamError

B = 8
# thresholds in 1/64 of the quantiser step
ALPHA64, BETA64, TC64 = 64, 16, 8
TWO_SAMPLES = 2 * 4096
MAX_DEQ = 1 << 31
BASIS_SHIFT = 14
# YCbCr -> RGB in 1/65536: 1.402, 0.344136286, 0.714136286, 1.772
CR_R, CB_G, CR_G, CB_B = 91881, 22554, 46802, 116130


def reconstruct(basis_t, step16, dcr64, bias256, hb, wb, members, Q, dcq) -> np.ndarray:
    """A decoded plane's samples: inverse transform, then deblocking."""
    plane = inverse_transform(basis_t, step16, dcr64, bias256, hb, wb, members, Q, dcq)
    if plane is None:
        raise CorruptStreamError("DC value out of range")
    deblock(plane, step16)
    return plane


@njit(cache=True)
def inverse_transform(basis_t, step16, dcr64, bias256, hb, wb, members, Q, dcq):
    """basis_t: (K, 64, 64) int64, basis_t[k, 1 + j, p] = round(2**14 B_k[p, 1 + j]).
    Returns the plane (hb*8, wb*8) in 1/4096 sample units, or None if a DC value is out of range."""
    limit = (1 << 30) // max(1, step16 * dcr64)
    dc_unit = step16 * dcr64 * 4
    plane = np.empty((hb * B, wb * B), np.int64)
    acc = np.empty(B * B, np.int64)
    half = 1 << (BASIS_SHIFT - 1)
    for b in range(hb * wb):
        if abs(dcq[b]) > limit:
            return None
        acc[:] = 0
        k = members[b]
        coded = False
        for j in range(Q.shape[1]):
            q = Q[b, j]
            if q == 0:
                continue
            coded = True
            d = (q * 256 - (bias256 if q > 0 else -bias256)) * step16
            d = min(max(d, -MAX_DEQ), MAX_DEQ)
            for p in range(B * B):
                acc[p] += d * basis_t[k, 1 + j, p]
        y0, x0 = (b // wb) * B, (b % wb) * B
        dc = dcq[b] * dc_unit
        for p in range(B * B):
            v = dc + ((acc[p] + half) >> BASIS_SHIFT) if coded else dc
            plane[y0 + p // B, x0 + p % B] = v
    return plane


@njit(cache=True)
def deblock(plane, step16):
    """In place on an (H, W) int64 plane in 1/4096 sample units, H and W multiples of 8."""
    unit = step16 * 256 // 64  # 1/64 step in 1/4096 sample units (step16 is 1/16 sample)
    A, Bt, tc = ALPHA64 * unit, BETA64 * unit, TC64 * unit
    H, W = plane.shape
    for y in range(H):  # vertical edges: p_i = column x-1-i of the left block, q_i = column x+i
        for x in range(B, W, B):
            on, p0, p1, p2, q0, q1, q2 = _edge(plane[y, x - 1], plane[y, x - 2], plane[y, x - 3], plane[y, x - 4],
                                               plane[y, x], plane[y, x + 1], plane[y, x + 2], plane[y, x + 3],
                                               A, Bt, tc)
            if on:
                plane[y, x - 1], plane[y, x - 2], plane[y, x - 3] = p0, p1, p2
                plane[y, x], plane[y, x + 1], plane[y, x + 2] = q0, q1, q2
    for y in range(B, H, B):  # then horizontal edges, on the already filtered samples
        for x in range(W):
            on, p0, p1, p2, q0, q1, q2 = _edge(plane[y - 1, x], plane[y - 2, x], plane[y - 3, x], plane[y - 4, x],
                                               plane[y, x], plane[y + 1, x], plane[y + 2, x], plane[y + 3, x],
                                               A, Bt, tc)
            if on:
                plane[y - 1, x], plane[y - 2, x], plane[y - 3, x] = p0, p1, p2
                plane[y, x], plane[y + 1, x], plane[y + 2, x] = q0, q1, q2


@njit(cache=True)
def _edge(p0, p1, p2, p3, q0, q1, q2, q3, A, Bt, tc):
    """Scalars in, scalars out (array arguments would cost reference counting per edge)."""
    d = q0 - p0
    if not (abs(d) < A and abs(p1 - p0) < Bt and abs(q1 - q0) < Bt):
        return False, p0, p1, p2, q0, q1, q2
    if abs(p2 - p0) < Bt and abs(q2 - q0) < Bt and abs(d) < (A >> 2) + TWO_SAMPLES:
        return (True, (p2 + 2 * p1 + 2 * p0 + 2 * q0 + q1 + 4) >> 3, (p2 + p1 + p0 + q0 + 2) >> 2,
                (2 * p3 + 3 * p2 + p1 + p0 + q0 + 4) >> 3, (q2 + 2 * q1 + 2 * q0 + 2 * p0 + p1 + 4) >> 3,
                (q2 + q1 + q0 + p0 + 2) >> 2, (2 * q3 + 3 * q2 + q1 + q0 + p0 + 4) >> 3)
    delta = min(max((d * 4 + (p1 - q1) + 4) >> 3, -tc), tc)
    return True, p0 + delta, p1, p2, q0 - delta, q1, q2


@njit(cache=True)
def _pixel(v):
    return min(max((v + 2048) >> 12, 0), 255)


@njit(cache=True)
def _chroma_row(c, y, sub, out):
    """Row y (luma coordinates) of a chroma plane, centred on 0, into out: full size, or half size
    upsampled by (9, 3, 3, 1)/16."""
    h, w = c.shape
    if not sub:
        for x in range(w):
            out[x] = c[y, x] - 128 * 4096
        return
    i = y >> 1
    i2 = min(max(i + (1 if y & 1 else -1), 0), h - 1)
    prev = 3 * c[i, 0] + c[i2, 0]  # vertical 3/4-1/4, in 1/4
    cur = prev
    for j in range(w):
        nxt = 3 * c[i, j + 1] + c[i2, j + 1] if j + 1 < w else cur
        out[2 * j] = ((3 * cur + prev + 8) >> 4) - 128 * 4096
        out[2 * j + 1] = ((3 * cur + nxt + 8) >> 4) - 128 * 4096
        prev, cur = cur, nxt


def pixels(planes, sub: bool, th: int, tw: int) -> np.ndarray:
    """A tile's (th, tw, 1 or 3) uint8 pixels from its decoded planes (Y, or Y Cb Cr)."""
    out = np.empty((th, tw, len(planes)), np.uint8)
    if len(planes) == 1:
        to_grey(planes[0], out)
    else:
        to_rgb(planes[0], planes[1], planes[2], sub, out)
    return out


@njit(cache=True)
def to_rgb(Y, Cb, Cr, sub, out):
    """out: (th, tw, 3) uint8 view; Y (>= th, >= tw), chroma full or half size (sub).
    int64 arithmetic: a garbage plane only wraps around, deterministically."""
    th, tw = out.shape[0], out.shape[1]
    cb_row = np.empty(Y.shape[1], np.int64)
    cr_row = np.empty(Y.shape[1], np.int64)
    for y in range(th):
        _chroma_row(Cb, y, sub, cb_row)
        _chroma_row(Cr, y, sub, cr_row)
        for x in range(tw):
            v, cb, cr = Y[y, x], cb_row[x], cr_row[x]
            out[y, x, 0] = _pixel(v + ((CR_R * cr + 32768) >> 16))
            out[y, x, 1] = _pixel(v - ((CB_G * cb + CR_G * cr + 32768) >> 16))
            out[y, x, 2] = _pixel(v + ((CB_B * cb + 32768) >> 16))


@njit(cache=True)
def to_grey(Y, out):
    for y in range(out.shape[0]):
        for x in range(out.shape[1]):
            out[y, x, 0] = _pixel(Y[y, x])

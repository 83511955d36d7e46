"""Format v3 block prediction from already decoded values (nothing signalled), integer-exact.

Both predictions are added to a plane after the inverse transform (the transform codes what is
left); the encoder subtracts the same prediction from the source before choosing members and
levels. The block means are known before any prediction (they are quantised on their own), so
encoder and decoder build the same prediction.

DC-smooth prediction (every plane): across a smooth field of block means the 8x8 grid's flat
blocks miss the gradient. Each block whose 3x3 neighbourhood of quantised means spans at most
SMOOTH_STEPS quantiser steps (neighbours outside the plane count as the block itself) is
predicted by the bilinear surface through the block centres' means (weights 7/16, 5/16, 3/16,
1/16 toward the neighbour on that side), minus the surface's own block mean (the block mean is
coded), times SMOOTH_GAIN4 / 4; a block next to an edge in the means gets none.

Chroma from luma (chroma planes of a colour image): each chroma block is predicted by
a * (L - mean L), L the decoded, deblocked luma averaged over 2x2 (4:2:0) or as it is, with a
the least-squares slope of the chroma block means on the luma block means over the 3x3 block
neighbourhood, shrunk toward 0 by CFL_SHRINK chroma steps squared and clipped to +-CFL_MAX:
where colours lie on a line locally (an edge between two colours), chroma follows luma.
"""

from __future__ import annotations

import numpy as np
from numba import njit

B = 8
SMOOTH_STEPS = 2           # gate: 3x3 spread of the means <= 2 quantiser steps
SMOOTH_GAIN4 = 3           # 3/4 of the bilinear surface
_W16 = np.array([7, 5, 3, 1, 1, 3, 5, 7], np.int64)    # distance to the block centre, 1/16 block
CFL_SHRINK = 4             # (chroma step)**2 added to the 3x3 luma variance
CFL_MAX256 = 512           # |a| <= 2


@njit(cache=True)
def add_smooth(plane, dcq, hb, wb, dc_unit, dcr64):
    """plane (hb*8, wb*8) int64 in 1/4096 samples += the prediction; dcq (hb*wb,) quantised
    means of dc_unit/4096 samples each (dc_unit = step16 * dcr64 * 4). The means must be in the
    range inverse_transform accepts (|dcq * dc_unit| <= 2**32): every product is below 2**52."""
    s = np.empty(B * B, np.int64)
    G = dcq.reshape(hb, wb)
    for bi in range(hb):
        up, down = max(bi - 1, 0), min(bi + 1, hb - 1)
        for bj in range(wb):
            left, right = max(bj - 1, 0), min(bj + 1, wb - 1)
            c = G[bi, bj]
            spread = 0
            for i in (up, bi, down):
                for j in (left, bj, right):
                    spread = max(spread, abs(G[i, j] - c))
            if spread * dcr64 > SMOOTH_STEPS * 64:  # a step is 64/dcr64 mean units
                continue
            total = 0
            for y in range(B):
                ni = up if y < B // 2 else down
                wy = _W16[y]
                rc = (16 - wy) * c + wy * G[ni, bj]                    # this column, 1/16 mean unit
                rl = (16 - wy) * G[bi, left] + wy * G[ni, left]
                rr = (16 - wy) * G[bi, right] + wy * G[ni, right]
                for x in range(B):
                    wx = _W16[x]
                    v = (16 - wx) * rc + wx * (rl if x < B // 2 else rr)  # 1/256 mean unit
                    s[y * B + x] = v
                    total += v
            y0, x0 = bi * B, bj * B
            for p in range(B * B):
                d = (s[p] * 64 - total) * SMOOTH_GAIN4 * dc_unit  # 1/2**16 of a 1/4096 sample
                plane[y0 + p // B, x0 + p % B] += (d + (1 << 15)) >> 16


@njit(cache=True)
def add_cfl(chroma, luma, sub, dcq, hb, wb, dc_unit, step16):
    """chroma (hb*8, wb*8) int64 += the chroma-from-luma prediction; luma the decoded,
    deblocked luma plane (twice the size when sub); dcq the chroma plane's quantised means.
    int64 throughout: a garbage plane only wraps around, deterministically."""
    H, W = hb * B, wb * B
    L = np.empty((H, W), np.int64)  # luma at chroma resolution, in 1/16384 sample (4 x 1/4096)
    for y in range(H):
        for x in range(W):
            if sub:
                L[y, x] = luma[2 * y, 2 * x] + luma[2 * y + 1, 2 * x] + luma[2 * y, 2 * x + 1] + luma[2 * y + 1, 2 * x + 1]
            else:
                L[y, x] = 4 * luma[y, x]
    lsum = np.zeros(hb * wb, np.int64)  # block sums of L
    for y in range(H):
        for x in range(W):
            lsum[(y // B) * wb + x // B] += L[y, x]
    shrink = 9 * CFL_SHRINK * step16 * step16  # 9 * 256 * CFL_SHRINK * (step/16)**2, like 9 * var
    for bi in range(hb):
        for bj in range(wb):
            sl = sc = slc = sll = 0
            for di in range(-1, 2):
                for dj in range(-1, 2):
                    n = min(max(bi + di, 0), hb - 1) * wb + min(max(bj + dj, 0), wb - 1)
                    lv = lsum[n] >> 16                 # block mean in 1/16 sample
                    cv = (dcq[n] * dc_unit) >> 8       # block mean in 1/16 sample
                    sl += lv
                    sc += cv
                    slc += lv * cv
                    sll += lv * lv
            cov = 9 * slc - sl * sc
            den = 9 * sll - sl * sl + shrink
            if den <= 0:
                continue
            a = min(max((cov * 256) // den, -CFL_MAX256), CFL_MAX256)
            if a == 0:
                continue
            b = bi * wb + bj
            y0, x0 = bi * B, bj * B
            for y in range(y0, y0 + B):
                for x in range(x0, x0 + B):
                    d = a * (64 * L[y, x] - lsum[b])  # a/256 * (L - mean) in 1/(2**16 * 4096) sample
                    chroma[y, x] += (d + (1 << 15)) >> 16

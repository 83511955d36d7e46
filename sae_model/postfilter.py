"""Decoder-side deblocking of a reconstructed plane (part of format v1: every decoder applies it).

Quantising 8x8 blocks independently leaves steps at block edges, mostly from the block mean
and the zeroed low-frequency coefficients at low rates. Across each block edge (vertical edges
first, then horizontal ones, on the plane's own block grid) the four samples p3..p0 | q0..q3
are filtered when the edge looks like a quantisation step rather than an image edge:

    on     = |q0 - p0| < A  and |p1 - p0| < Bt  and |q1 - q0| < Bt
    strong = on and |p2 - p0| < Bt and |q2 - q0| < Bt and |q0 - p0| < A/4 + 2 samples
    strong: p0..p2 and q0..q2 get H.264's strong luma filter (3 taps per side)
    on:     p0 += d, q0 -= d with d = clip(((q0 - p0) * 4 + (p1 - q1) + 4) >> 3, -tc, tc)

A, Bt and tc are proportional to the plane's quantiser step, so the filter fades out at high
quality. Samples are integers in 1/4096 sample units and every operation is an integer add or
shift, so the output is identical on every machine.
"""

from __future__ import annotations

import numpy as np

B = 8
# thresholds in 1/64 of the quantiser step
ALPHA64, BETA64, TC64 = 64, 16, 8
TWO_SAMPLES = 2 * 4096


def deblock(plane: np.ndarray, step16: int) -> np.ndarray:
    """plane: (H, W) int64 in 1/4096 sample units, H and W multiples of 8. Returns a new plane."""
    unit = step16 * 256 // 64  # 1/64 step in 1/4096 sample units (step16 is 1/16 sample)
    th = (ALPHA64 * unit, BETA64 * unit, TC64 * unit)
    out = np.array(plane, np.int64, copy=True)
    H, W = out.shape
    if W >= 2 * B:  # vertical edges: p_i = column 7 - i of the left block, q_i = column i of the right
        v = out.reshape(H, W // B, B)
        _filter([v[:, :-1, B - 1 - i] for i in range(4)], [v[:, 1:, i] for i in range(4)], *th)
    if H >= 2 * B:  # then horizontal edges, on the already filtered samples
        h = out.reshape(H // B, B, W)
        _filter([h[:-1, B - 1 - i] for i in range(4)], [h[1:, i] for i in range(4)], *th)
    return out


def _filter(p: list, q: list, A: int, Bt: int, tc: int) -> None:
    """p, q: views of the 4 samples on each side of every edge (index 0 next to the edge);
    written in place."""
    p0, p1, p2, p3 = (x.copy() for x in p)
    q0, q1, q2, q3 = (x.copy() for x in q)
    d = q0 - p0
    on = (np.abs(d) < A) & (np.abs(p1 - p0) < Bt) & (np.abs(q1 - q0) < Bt)
    strong = on & (np.abs(p2 - p0) < Bt) & (np.abs(q2 - q0) < Bt) & (np.abs(d) < (A >> 2) + TWO_SAMPLES)
    weak = on & ~strong
    delta = np.clip((d * 4 + (p1 - q1) + 4) >> 3, -tc, tc)
    p[0][...] = np.where(strong, (p2 + 2 * p1 + 2 * p0 + 2 * q0 + q1 + 4) >> 3, np.where(weak, p0 + delta, p0))
    q[0][...] = np.where(strong, (q2 + 2 * q1 + 2 * q0 + 2 * p0 + p1 + 4) >> 3, np.where(weak, q0 - delta, q0))
    p[1][...] = np.where(strong, (p2 + p1 + p0 + q0 + 2) >> 2, p1)
    q[1][...] = np.where(strong, (q2 + q1 + q0 + p0 + 2) >> 2, q1)
    p[2][...] = np.where(strong, (2 * p3 + 3 * p2 + p1 + p0 + q0 + 4) >> 3, p2)
    q[2][...] = np.where(strong, (2 * q3 + 3 * q2 + q1 + q0 + p0 + 4) >> 3, q2)

"""Block structure shared by the encoder and every format: blocks, bands, contexts, planes.

A tile's pixels become planes (Y, or Y Cb Cr with chroma optionally 4:2:0), each padded to
whole 8x8 blocks. Per block: a member k of the mixture, 63 quantised AC levels Q in the
member's basis order, and a quantised block mean dcq. Coefficient positions are grouped into
bands (BANDS); a block's eob is 0 (no AC) or 1 + the last band holding a nonzero level.

Contexts (the same in v1 and v2, so one table set serves both; tables.py):
  AC: prior bucket (0..NPRIOR-1, from the member's coefficient RMS over the step) * N_ACTIVITY
      + activity, activity = (recent * N_NEIGHBOUR + neighbour) * N_TO_EOB + to_eob with
      recent = bucket of 2(|q_{j-1}| + |q_{j-2}|) + nonzero count, edges (0, 2, 5, 11);
      neighbour = bucket of the left + top blocks' absolute sums over earlier bands, edges (0, 4);
      to_eob = bucket of the bands left before the block's eob, edges (0, 2).
  DC: (stage * N_SPREAD + spread) * N_EOB_BUCKET + eob bucket, stage 0 = the coarse grid,
      1 = centres, 2 = edges; spread = bucket of max - min of the decoded neighbours, edges
      (0, 1, 2, 4, 8, 16, 32); eob bucket edges (0, 4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tables import Tables

B = 8
NPOS = B * B - 1
BANDS = np.array((0, 1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 31, 38, 46, 54, 63), np.int64)
BANDS.flags.writeable = False
NBANDS = len(BANDS) - 1
NPRIOR = 16
N_RECENT, N_NEIGHBOUR, N_TO_EOB = 5, 3, 3
N_ACTIVITY = N_RECENT * N_NEIGHBOUR * N_TO_EOB  # 45 AC contexts per prior bucket
N_AC_CTX = NPRIOR * N_ACTIVITY
N_DC_STAGE, N_SPREAD, N_EOB_BUCKET = 3, 8, 3
N_DC_CTX = N_DC_STAGE * N_SPREAD * N_EOB_BUCKET
DC_SCALE = 1024  # the block-mean step is step16 * dc_ratio64 / DC_SCALE samples
MID_GREY = 128


@dataclass(eq=False)
class ModelArrays:
    """What coding needs from a model."""
    bases: np.ndarray       # (K, 64, 64) float32; column 0 is the constant atom, 1.. by variance
    basis_t: np.ndarray     # (K, 64, 64) int64: round(bases[k, p, j] << postfilter.BASIS_SHIFT) at [k, j, p]
    sigma16: np.ndarray     # (K, 63) int64: coefficient RMS in 1/16 sample units
    tables: Tables
    bits: np.ndarray        # (2, NPRIOR, ESC+1) encoder-side rate proxy in bits per |q|

    @property
    def K(self) -> int:
        return self.bases.shape[0]


@dataclass(frozen=True, eq=False)
class PlaneLevels:
    """One plane of a tile as the encoder decided it: what a format's coder writes."""
    pc: int                 # plane class: 0 luma, 1 chroma
    hb: int                 # blocks down
    wb: int                 # blocks across
    pb: np.ndarray          # (K, 63) prior buckets at this plane's step
    members: np.ndarray     # (hb*wb,) int64
    Q: np.ndarray           # (hb*wb, 63) int64
    dcq: np.ndarray         # (hb*wb,) int64
    origin: int             # DC prediction of the first block (dc_origin)
    source: np.ndarray | None = None  # the source plane (samples): the v3 restoration filter's target


def chroma_step16(step16: int, chroma_ratio64: int) -> int:
    return max(1, (step16 * chroma_ratio64 + 32) // 64)


def tile_planes(channels: int, subsampled: bool, th: int, tw: int, step16: int, chroma_ratio64: int):
    """(plane class, step16, blocks down, blocks across) of each plane of a th x tw tile."""
    m = 16 if subsampled else 8
    H, W = th + (-th % m), tw + (-tw % m)
    out = [(0, step16, H // B, W // B)]
    if channels == 3:
        f = 2 if subsampled else 1
        out += [(1, chroma_step16(step16, chroma_ratio64), H // f // B, W // f // B)] * 2
    return out


def prior_buckets(sigma16: np.ndarray, step16: int) -> np.ndarray:
    """Bucket b in 0..15 = #{b' in 1..15 : sigma/step >= 2**((b'-8)/2)}, integer arithmetic."""
    lhs = sigma16.astype(np.int64) ** 2 << 8
    pb = np.zeros(sigma16.shape, np.int64)
    for b in range(1, NPRIOR):
        pb += lhs >= (step16 * step16) << b
    return pb


def dc_origin(step16: int, dcr64: int) -> int:
    d = step16 * dcr64  # DC step = d / DC_SCALE samples; predict mid-grey first
    return (MID_GREY * DC_SCALE * 2 + d) // (2 * d)

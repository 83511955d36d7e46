"""Encoder analysis: settings, colour planes, the member choice and quantisation of each block.

None of this is in the stream: the decoder reads every parameter it needs from the header.
analyse() turns an image into planes.PlaneLevels tile by tile: each block minus the prediction
of the written format (formats/v3.py) is what gets quantised; the format's coder writes them,
or blockcoder.SymbolCounter counts them (table fitting, pretrained.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from numba import njit

from . import imageio
from .formats import v3
from .planes import (BANDS, DC_SCALE, NPOS, NPRIOR, N_ACTIVITY, B, ModelArrays, PlaneLevels,
                     chroma_step16, dc_origin, prior_buckets)
from .tables import ALPHABET, ESC

MAX_STEP16 = 65535


@dataclass(frozen=True)
class EncoderSettings:
    rounding: float = 0.5        # candidate level q = floor(|c|/step + rounding); RDO may lower it by one
    lam: float = 0.075           # rate-distortion multiplier in step**2 per bit (levels, member, filters)
    rdoq: bool = True            # rate-distortion choice of levels and of each block's end of block
    chroma_ratio64: int = 40     # chroma step = 40/64 = 0.625 luma step
    dc_ratio64: int = 6          # block-mean step = 6/64 step = 0.75 step / 8 (finer than AC)
    bias256: int = 0             # reconstruction bias toward zero, 1/256 of a step
    subsample: bool | None = None  # 4:2:0 chroma; None: from subsample_step16 on
    subsample_step16: int = 112  # 4:2:0 pays at luma steps >= 7 samples; finer, it caps PSNR
    members: tuple[int, ...] | None = None  # the mixture members the search may pick (None: all)
    smooth: bool = True          # v3 DC-smooth prediction (off only for comparisons)
    cfl: bool = True             # v3 chroma-from-luma prediction (off only for comparisons)
    restoration: bool = True     # v3 restoration filter (off only for comparisons)
    tile: int = 1024             # tile side in pixels

    def __post_init__(self):
        if not (1 <= self.chroma_ratio64 <= 255 and 1 <= self.dc_ratio64 <= 255 and 0 <= self.bias256 <= 127):
            raise ValueError("chroma_ratio64 and dc_ratio64 must be in 1..255, bias256 in 0..127")
        if self.tile % 16 or not 16 <= self.tile <= 4096:
            raise ValueError("tile must be a multiple of 16 in 16..4096")
        if self.members is not None:
            object.__setattr__(self, "members", tuple(int(k) for k in self.members))

    def subsampled(self, channels: int, step16: int) -> bool:
        return channels == 3 and (step16 >= self.subsample_step16 if self.subsample is None else self.subsample)


# Luma step16 at quality 0, 5, ..., 100 (log-linear in between): up to 95 saepress then gives
# about the mean RGB PSNR of Pillow's JPEG at the same quality on the training photos
# (bench/calibrate.py measured them), so a quality always means fewer bytes than JPEG's; from
# 95 to 100 the step falls to 0.5 sample (near-lossless, where JPEG 100 stops at ~42 dB).
QUALITY_KNOTS = (6834, 3877, 1944, 1408, 1142, 978, 873, 793, 733, 678, 634, 592, 548, 501, 452,
                 402, 341, 275, 198, 124, 8)
KNOT_STEP = 5


def quality_to_step16(quality: int) -> int:
    """Monotone, decreasing: quality 0 -> step ~433 samples, 50 -> ~41, 95 -> ~7.9, 100 -> 0.5
    (1/16 sample units)."""
    i = min(int(quality) // KNOT_STEP, len(QUALITY_KNOTS) - 2)
    a, b = np.log2(QUALITY_KNOTS[i]), np.log2(QUALITY_KNOTS[i + 1])
    step16 = 2 ** (a + (b - a) * (quality - i * KNOT_STEP) / KNOT_STEP)
    return min(MAX_STEP16, max(1, int(round(step16))))


def analyse(arrays: ModelArrays, pixels: np.ndarray, quality: int,
            settings: EncoderSettings) -> Iterator[list[PlaneLevels]]:
    """Per tile (raster order) the levels of each plane; pixels (H, W, 1 or 3) uint8."""
    h, w, nc = pixels.shape
    step16 = quality_to_step16(quality)
    sub = settings.subsampled(nc, step16)
    T, dcr64 = settings.tile, settings.dc_ratio64
    tools = v3.tools(settings.smooth, settings.cfl)
    for y0 in range(0, h, T):
        for x0 in range(0, w, T):
            tile, luma = [], None
            for pc, plane, s16 in colour_planes(pixels[y0:y0 + T, x0:x0 + T], sub, step16,
                                                settings.chroma_ratio64):
                hb, wb = plane.shape[0] // B, plane.shape[1] // B
                dcq = quantised_means(plane, s16, dcr64)
                pred = v3.prediction(tools, dcq, hb, wb, s16, dcr64, luma, sub)
                members, Q = analyse_plane(plane - pred / 4096.0, arrays, pc, s16, settings)
                if pc == 0 and nc == 3:  # chroma is predicted from the luma the decoder will see
                    luma = v3.reconstruct(tools, arrays.basis_t, s16, dcr64, settings.bias256, hb, wb, members, Q, dcq)
                tile.append(PlaneLevels(pc, hb, wb, prior_buckets(arrays.sigma16, s16), members, Q, dcq,
                                        dc_origin(s16, dcr64), plane))
            yield tile


def quantised_means(X: np.ndarray, step16: int, dcr64: int) -> np.ndarray:
    hb, wb = X.shape[0] // B, X.shape[1] // B
    mean = X.reshape(hb, B, wb, B).mean((1, 3)).ravel()
    return np.rint(mean * float(DC_SCALE) / (step16 * dcr64)).astype(np.int64)


def colour_planes(px: np.ndarray, sub: bool, step16: int, chroma_ratio64: int):
    """Yield (plane class, padded float64 plane, step16) for a tile."""
    m = 16 if sub else 8
    h, w = px.shape[:2]
    px = np.pad(px, ((0, -h % m), (0, -w % m), (0, 0)), mode="edge")
    if px.shape[2] == 1:
        yield 0, px[:, :, 0].astype(np.float64), step16
        return
    ycc = imageio.rgb_to_ycbcr(px)
    yield 0, ycc[:, :, 0], step16
    cstep = chroma_step16(step16, chroma_ratio64)
    for c in (1, 2):
        p = imageio.downsample2(ycc[:, :, c]) if sub else ycc[:, :, c]
        yield 1, p, cstep


def rate_proxy(ac: np.ndarray) -> np.ndarray:
    """Bits of a value of magnitude |q| (sign included) per (plane class, prior bucket): the
    tables' distribution over the activity contexts the encoder cannot know in advance, each
    context weighted by how often it occurs (an unweighted mean over contexts priced zeros and
    large levels as the rare contexts do: 0.3-0.5% more rate at the same PSNR)."""
    t = ac.reshape(2, NPRIOR, N_ACTIVITY, ALPHABET).astype(np.float64).sum(2)
    return -np.log2(t[..., ESC:] / t.sum(-1, keepdims=True))


def analyse_plane(X: np.ndarray, m: ModelArrays, pc: int, step16: int, settings: EncoderSettings):
    """Choose a member per block by rate-distortion cost and quantise the blocks' AC (their
    means are quantised on their own: quantised_means). Returns members and Q (nb, 63)."""
    rounding, lam, rdoq = settings.rounding, settings.lam, settings.rdoq
    H, W = X.shape
    hb, wb = H // B, W // B
    blocks = X.reshape(hb, B, wb, B).transpose(0, 2, 1, 3).reshape(hb * wb, B * B)
    xc = (blocks - blocks.mean(1)[:, None]).astype(np.float32)
    inv_step = np.float32(16.0 / step16)
    bias = np.float32(settings.bias256 / 256.0)
    # bits of level |q| at position j of member k: flat[offset[k, j] + min(|q|, ESC)]
    flat = m.bits[pc].astype(np.float32).ravel()
    offset = (prior_buckets(m.sigma16, step16) * (ESC + 1)).astype(np.int32)
    ks = list(range(m.K)) if settings.members is None else list(settings.members)

    def quantise(k, rows):
        """Levels of member k, with their error (in steps) and rate proxy (bits)."""
        c = xc[rows] @ m.bases[k, :, 1:]
        a = np.abs(c) * inv_step
        q = np.floor(a + np.float32(rounding))
        at = offset[k][None, :]
        r = flat[at + np.minimum(q, ESC).astype(np.int32)]
        e = a - np.where(q > 0, q - bias, 0)
        if rdoq:  # per coefficient: keep q or q - 1, whichever has the lower D + lam * R
            lo = np.maximum(q - 1, 0)
            r_lo = flat[at + np.minimum(lo, ESC).astype(np.int32)]
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
    for i, k in enumerate(ks):
        _search_costs(xc @ m.bases[k, :, 1:], inv_step, np.float32(rounding), bias, flat, offset[k], ESC,
                      np.float32(lam), rdoq, np.float32(np.log2(len(ks))), D[:, i], R[:, i], NZ[:, i])
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
        c, q, r, e = quantise(ks[i], sel)
        if rdoq:
            q = _truncate(q, r, e, np.abs(c) * inv_step, lam, mbits[i])
        Qbest[sel] = (np.sign(c) * q).astype(np.int64)
    return members, Qbest


@njit(cache=True)
def _search_costs(c, inv_step, rounding, bias, flat, offset, esc, lam, rdoq, member_bits, D, R, NZ):
    """Member search, one member: per block the squared error (steps**2), the rate proxy (bits of
    the levels up to the end of the band of the last nonzero one: later ones are not coded) and
    whether any level is nonzero, with the levels and the end of block chosen as the final
    quantisation chooses them (rdoq: each level q or q - 1 by D + lam * R, then the cheapest end
    of block among the band boundaries at member_bits per coded block); one pass per block.
    Searching under a plain deadzone quantiser instead chose worse members: 0.9% more rate."""
    n = c.shape[1]
    err = np.empty(n, np.float32)
    bits = np.empty(n, np.float32)
    energy = np.empty(n, np.float32)
    for b in range(c.shape[0]):
        last = -1
        for j in range(n):
            a = abs(c[b, j]) * inv_step
            q = np.floor(a + rounding)
            e = a - (q - bias) if q > 0 else a
            r = flat[offset[j] + min(int(q), esc)]
            if rdoq and q > 0:
                lo = q - 1
                e_lo = a - (lo - bias) if lo > 0 else a
                r_lo = flat[offset[j] + min(int(lo), esc)]
                if e_lo * e_lo + lam * r_lo < e * e + lam * r:
                    q, e, r = lo, e_lo, r_lo
            err[j], bits[j], energy[j] = e * e, r, a * a
            if q > 0:
                last = j
        # the end of block: the band boundary after the last nonzero level, or an earlier one by RD cost
        end = 0
        while last >= 0 and BANDS[end] <= last:
            end += 1
        dropped = np.float32(0.0)
        for j in range(BANDS[end], n):
            dropped += energy[j]
        kept_d = np.float32(0.0)
        kept_r = np.float32(0.0)
        for j in range(BANDS[end]):
            kept_d += err[j]
            kept_r += bits[j]
        best_d, best_r, best_e = kept_d + dropped, kept_r, end
        if rdoq:
            for E in range(end - 1, -1, -1):  # drop band E (positions BANDS[E]..BANDS[E+1]-1)
                for j in range(BANDS[E], BANDS[E + 1]):
                    kept_d -= err[j]
                    kept_r -= bits[j]
                    dropped += energy[j]
                if kept_d + dropped + lam * (kept_r + (member_bits if E else 0)) < \
                        best_d + lam * (best_r + (member_bits if best_e else 0)):
                    best_d, best_r, best_e = kept_d + dropped, kept_r, E
        D[b], R[b], NZ[b] = best_d, best_r, best_e > 0


def _truncate(q, r, e, a, lam, member_bits):
    """Rate-distortion choice of each block's end of block among the band boundaries: keeping
    positions < E costs their error and bits, dropping the rest costs their energy (units of
    step**2; E = 0 also saves the member index). Only ever zeroes coefficients."""
    keep = np.cumsum(e * e + lam * r, axis=1)
    drop = np.cumsum((a * a)[:, ::-1], axis=1)[:, ::-1]
    J = np.empty((len(q), len(BANDS)), np.float32)
    for i, E in enumerate(BANDS.tolist()):
        J[:, i] = (keep[:, E - 1] + lam * member_bits if E else 0) + (drop[:, E] if E < NPOS else 0)
    end = BANDS[J.argmin(1)]
    return np.where(np.arange(NPOS)[None, :] < end[:, None], q, 0)

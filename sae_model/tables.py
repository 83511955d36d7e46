"""The model file's integer count tables: their layout, shared by both formats and the encoder.

A coded value is signed in -ESC..ESC; +-ESC means "escape": the magnitude excess
r = |v| - ESC is then coded as its bit length k (0..ESC_BITS-1, table `esc`) and its k-1 low
bits. Column c of an `ac` or `dc` row counts the value c - ESC. Rows: per plane class (luma,
chroma) the contexts of planes.py (N_AC_CTX, N_DC_CTX). Format v1 codes under these tables as
they are (formats/v1.py); formats v2-v4 start their adaptive models from them (blockcoder.py).
`eob` (model files fitted for format v4 on; optional): per plane class and v4 eob context
(blockcoder.N_EOB_CTX_V4) the count of each end of block 0..NBANDS, v4's eob start state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ESC = 18
ALPHABET = 2 * ESC + 1
ESC_BITS = 32  # bit lengths 0..31 of the escape excess


@dataclass(frozen=True, eq=False)
class Tables:
    ac: np.ndarray   # (2, N_AC_CTX, ALPHABET) int64
    dc: np.ndarray   # (2, N_DC_CTX, ALPHABET) int64
    esc: np.ndarray  # (2, ESC_BITS) int64
    eob: np.ndarray | None = None  # (2, N_EOB_CTX_V4, NBANDS + 1) int64


def laplace_counts(scale: float, total: int = 1 << 16) -> np.ndarray:
    """Integer table of a discretised Laplace (scale in quantiser steps) over -ESC..ESC."""
    v = np.arange(-ESC, ESC + 1, dtype=np.float64)
    b = max(scale, 0.05) / np.sqrt(2)
    cdf = lambda x: np.where(x < 0, 0.5 * np.exp(x / b), 1 - 0.5 * np.exp(-x / b))
    p = cdf(v + 0.5) - cdf(v - 0.5)
    p[0] += cdf(-ESC - 0.5)
    p[-1] += 1 - cdf(ESC + 0.5)
    return np.maximum(np.rint(p * total), 1).astype(np.int64)

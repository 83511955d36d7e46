"""Format v1 entropy decoding (read only: v2 streams use rangecoder.py), and the model's tables.

v1 coded symbols with constriction's range coder under static integer tables selected by
contexts, in batches. Every probability comes from integer counts (model tables, or per-tile histograms quantised
to a fixed integer table), so encoder and decoder build bit-identical constriction models on
any machine. A context only depends on data decoded earlier (earlier coefficient bands,
earlier hierarchy levels), so a whole band or level is decoded with one call per context.

Signed values use the alphabet -ESC..ESC; +-ESC means "escape": the magnitude excess
r = |v| - ESC is then coded as its bit length k (table `esc`) followed by its k-1 low bits
(uniform). Escapes of one batch follow the batch.
"""

from __future__ import annotations

import constriction
import numpy as np

from .errors import CorruptStreamError

ESC = 18
ALPHABET = 2 * ESC + 1
ESC_BITS = 32  # bit lengths 0..31 of the escape excess
_m = constriction.stream.model

# Per-tile histograms (members, end-of-block bands) are sent as 5-bit levels; level -> count.
HIST_LEVELS = 32
LEVEL_COUNT = np.array([0] + [int(round(2 ** (i / 2))) for i in range(HIST_LEVELS - 1)], np.int64)


class Tables:
    """Constriction models built once from integer count tables."""

    def __init__(self, ac: np.ndarray, dc: np.ndarray, esc: np.ndarray):
        self.ac, self.dc, self.esc = ac, dc, esc
        self._cache: dict = {}

    def model(self, kind: str, pc: int, ctx: int):
        key = (kind, pc, ctx)
        m = self._cache.get(key)
        if m is None:
            counts = getattr(self, kind)[pc, ctx] if kind != "esc" else self.esc[pc]
            m = _m.Categorical(counts.astype(np.float64), perfect=False)
            self._cache[key] = m
        return m


def hist_model(levels: np.ndarray):
    counts = LEVEL_COUNT[levels].astype(np.float64)
    if counts.sum() == 0:
        counts[:] = 1.0
    return _m.Categorical(counts, perfect=False)


_UNIFORM = _m.Uniform()
_HIST_UNIFORM = _m.Uniform(HIST_LEVELS)


class Decoder:
    def __init__(self, tables: Tables, data: bytes):
        self.t = tables
        self.rc = constriction.stream.queue.RangeDecoder(np.frombuffer(data, "<u4").astype(np.uint32))

    def histogram(self, count: int, size: int) -> np.ndarray:
        if size == 1:
            return np.zeros(count, np.int64)
        levels = self.rc.decode(_HIST_UNIFORM, size)
        used = np.flatnonzero(levels)
        if len(used) <= 1:
            return np.full(count, used[0] if len(used) else 0, np.int64)
        return self.rc.decode(hist_model(levels), count).astype(np.int64)

    def signed(self, kind: str, pc: int, ctx: np.ndarray) -> np.ndarray:
        n = len(ctx)
        if n == 0:
            return np.zeros(0, np.int64)
        order = np.argsort(ctx, kind="stable")
        ctx_sorted = ctx[order]
        sym_sorted = np.empty(n, np.int64)
        for c, lo, hi in _groups(ctx_sorted):
            sym_sorted[lo:hi] = self.rc.decode(self.t.model(kind, pc, c), hi - lo)
        values = np.empty(n, np.int64)
        values[order] = sym_sorted - ESC
        esc = np.abs(values) >= ESC
        n_esc = int(esc.sum())
        if n_esc:
            k = self.rc.decode(self.t.model("esc", pc, 0), n_esc).astype(np.int64)
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


def laplace_counts(scale: float, total: int = 1 << 16) -> np.ndarray:
    """Integer table of a discretised Laplace (scale in quantiser steps) over -ESC..ESC."""
    v = np.arange(-ESC, ESC + 1, dtype=np.float64)
    b = max(scale, 0.05) / np.sqrt(2)
    cdf = lambda x: np.where(x < 0, 0.5 * np.exp(x / b), 1 - 0.5 * np.exp(-x / b))
    p = cdf(v + 0.5) - cdf(v - 0.5)
    p[0] += cdf(-ESC - 0.5)
    p[-1] += 1 - cdf(ESC + 0.5)
    return np.maximum(np.rint(p * total), 1).astype(np.int64)

"""Range coder and adaptive frequency models of format v2 (compiled with numba).

The coder is the byte-oriented carry-propagating range coder of LZMA, driven by
multi-symbol frequency tables instead of binary ones. Everything is integer arithmetic on
int64 holding values below 2**33, so a stream decodes identically on every machine, compiler
and thread count (the cross-platform contract); numba only makes it fast.

Encoder state: low (33 bits), range (32 bits), a pending byte `cache` and a run of 0xFF bytes
`pending` that a later carry may still turn into 0x00. A symbol with cumulative frequency
[c0, c1) of PROB_TOTAL narrows the range to r * (c1 - c0) at low + r * c0, r = range >> PROB_BITS;
the range is renormalised to >= 2**24 a byte at a time. The decoder finds the symbol by
comparing its code with r * c1 (no division on the symbol path). The first byte written is always 0
(LZMA's convention); finish() flushes 5 bytes.

An adaptive model (one context) holds integer counts, their sum, and the cumulative table in
use. Each symbol adds INC to its count (all counts are halved, rounding up, once the sum
exceeds MAX_COUNT); every PERIOD symbols of that context the cumulative table is rebuilt from
the counts: each symbol gets 1 + floor(count * scale / 2**16) with
scale = floor((PROB_TOTAL - n) * 2**16 / sum), the last rank takes what the floors left. Counts start
from the model file's static tables (normalised to PRIOR_TOTAL) or uniform. Symbols are stored
by rank (most probable first in the model's order), so the decoder's search stops after a
step or two.

The state of a coder is a small int64 array (the S_* indices) so kernels can pass it between
calls; `error` records a decoder that ran off its input or met a code no encoder writes, and
the caller turns it into CorruptStreamError.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .tables import ESC

ENCODE, DECODE, COUNT = 0, 1, 2
S_LOW, S_RANGE, S_CACHE, S_PENDING, S_POS, S_CODE, S_ERROR = range(7)
STATE_SIZE = 7
ERR_OVERRUN, ERR_RANGE, ERR_FULL, ERR_VALUE = 1, 2, 4, 8
TOP = 1 << 24
MASK32 = (1 << 32) - 1
PROB_BITS = 15
PROB_TOTAL = 1 << PROB_BITS
PRIOR_TOTAL = 1 << 12
MAX_COUNT = 1 << 16
INC = 48
PERIOD = 32
M_SUM, M_SINCE = 0, 1  # columns of a model's `meta`
RAW_CHUNK = 15


def new_encoder() -> np.ndarray:
    st = np.zeros(STATE_SIZE, np.int64)
    st[S_RANGE] = MASK32
    st[S_PENDING] = 1
    return st


def new_decoder(data: np.ndarray) -> np.ndarray:
    st = np.zeros(STATE_SIZE, np.int64)
    st[S_RANGE] = MASK32
    _init_decoder(st, data)
    return st


@njit(cache=True)
def _init_decoder(st, buf):
    for i in range(5):
        st[S_CODE] = ((st[S_CODE] << 8) | (buf[i] if i < buf.size else 0)) & MASK32
    st[S_POS] = 5
    if buf.size < 5:
        st[S_ERROR] |= ERR_OVERRUN


@njit(cache=True)
def code_batch(mode, st, buf, counts, cum, meta, ctxs, vals, signed, esc_row):
    """Code vals[i] under context ctxs[i] (mode DECODE: fills vals; COUNT: only tallies counts).

    signed: values in -ESC..ESC by rank 0, +1, -1, +2, ...; +-ESC escapes to the bit length k
    of |v| - ESC under context esc_row, then its k - 1 low bits (RAW_CHUNK at a time).
    Otherwise vals are symbols. The coder state lives in locals for the whole batch (one
    interval/renormalisation site for every kind of item, no per-symbol calls)."""
    decoding = mode == DECODE
    low, rng, cache, pending = st[S_LOW], st[S_RANGE], st[S_CACHE], st[S_PENDING]
    pos, code, err = st[S_POS], st[S_CODE], st[S_ERROR]
    n = counts.shape[1]
    for i in range(vals.size):
        v = vals[i]
        a = abs(v)
        sym = v
        if signed:
            sym = 0 if a == 0 else 2 * min(a, ESC) - 1 + (1 if v < 0 else 0)
        excess = a - ESC
        k = 0
        if not decoding:
            while (excess >> k) > 0:
                k += 1
        phase = 0  # 0: the symbol, 1: escape bit length, 2..: raw chunks of the excess
        raw_left = 0
        while True:
            row = ctxs[i] if phase == 0 else esc_row
            if mode == COUNT:
                counts[row, sym if phase == 0 else k] += 1
                if phase == 0 and signed and (sym + 1) >> 1 == ESC:
                    phase = 1
                    continue
                break
            r = rng >> PROB_BITS
            if phase < 2:
                s = sym if phase == 0 else k
                if decoding:
                    if code >= r * PROB_TOTAL:
                        err |= ERR_RANGE
                    s = 0
                    while s < n - 1 and code >= r * cum[row, s + 1]:
                        s += 1
                c0, c1 = cum[row, s], cum[row, s + 1]
            else:
                bits = min(raw_left, RAW_CHUNK)
                raw_left -= bits
                unit = r << (PROB_BITS - bits)
                if decoding:
                    s = min(code // unit, (1 << bits) - 1)
                else:
                    s = ((excess - (1 << (k - 1))) >> raw_left) & ((1 << bits) - 1)
                c0, c1 = s << (PROB_BITS - bits), (s + 1) << (PROB_BITS - bits)
            if decoding:
                code -= r * c0
            else:
                low += r * c0
            rng = r * (c1 - c0)
            while rng < TOP:
                rng <<= 8
                if decoding:
                    byte = 0
                    if pos < buf.size:
                        byte = buf[pos]
                    else:
                        err |= ERR_OVERRUN
                    pos += 1
                    code = ((code << 8) | byte) & MASK32
                else:  # LZMA's ShiftLow: emit the cached byte (plus carry) and pending 0xFFs
                    if low < 0xFF000000 or low > MASK32:
                        carry = low >> 32
                        byte = cache
                        while pending > 0:
                            if pos < buf.size:
                                buf[pos] = (byte + carry) & 0xFF
                            else:
                                err |= ERR_FULL
                            pos += 1
                            byte = 0xFF
                            pending -= 1
                        cache = (low >> 24) & 0xFF
                    pending += 1
                    low = (low & 0x00FFFFFF) << 8
            if phase >= 2:
                excess = ((excess << bits) | s) if decoding else excess
                if raw_left == 0:
                    break
                phase += 1
                continue
            counts[row, s] += INC
            meta[row, M_SUM] += INC
            if meta[row, M_SUM] > MAX_COUNT:
                halve(counts, meta, row)
            meta[row, M_SINCE] += 1
            if meta[row, M_SINCE] >= PERIOD:
                rebuild(counts, cum, meta, row)
            if phase == 0:
                sym = s
                if not (signed and (s + 1) >> 1 == ESC):
                    break
                phase = 1
            else:
                k = s
                if k > 30:
                    err |= ERR_VALUE
                    k = 0
                if k < 2:
                    excess = k
                    break
                if decoding:
                    excess = 1  # the leading bit; raw chunks append the rest
                raw_left = k - 1
                phase = 2
        if decoding:
            if signed:
                a = (sym + 1) >> 1
                if a == ESC:
                    a = ESC + excess
                vals[i] = -a if sym > 0 and sym % 2 == 0 else a
            else:
                vals[i] = sym
        if err:
            break
    st[S_LOW], st[S_RANGE], st[S_CACHE], st[S_PENDING] = low, rng, cache, pending
    st[S_POS], st[S_CODE], st[S_ERROR] = pos, code, err


@njit(cache=True)
def finish(st, buf):
    """Flush the encoder: 5 ShiftLows (the decoder reads exactly what was written)."""
    for _ in range(5):
        _flush_byte(st, buf)


@njit(cache=True)
def _flush_byte(st, buf):
    """LZMA's ShiftLow (code_batch holds the same steps inline, on its local state)."""
    low = st[S_LOW]
    if low < 0xFF000000 or low > MASK32:
        byte = st[S_CACHE]
        while st[S_PENDING] > 0:
            p = st[S_POS]
            if p < buf.size:
                buf[p] = (byte + (low >> 32)) & 0xFF
            else:
                st[S_ERROR] |= ERR_FULL
            st[S_POS] = p + 1
            byte = 0xFF
            st[S_PENDING] -= 1
        st[S_CACHE] = (low >> 24) & 0xFF
    st[S_PENDING] += 1
    st[S_LOW] = (low & 0x00FFFFFF) << 8


@njit(cache=True)
def halve(counts, meta, row):
    total = 0
    for i in range(counts.shape[1]):
        counts[row, i] = (counts[row, i] + 1) >> 1
        total += counts[row, i]
    meta[row, M_SUM] = total


@njit(cache=True)
def rebuild(counts, cum, meta, ctx):
    """One pass: the mass the floors lose goes to the last rank (the rarest; costs < 0.002 bits a symbol)."""
    n = counts.shape[1]
    scale = ((PROB_TOTAL - n) << 16) // max(meta[ctx, M_SUM], 1)
    acc = 0
    for i in range(n - 1):
        acc += 1 + ((counts[ctx, i] * scale) >> 16)
        cum[ctx, i + 1] = acc
    cum[ctx, n] = PROB_TOTAL
    meta[ctx, M_SINCE] = 0


class Model:
    """Start state of one kind of adaptive model (all its contexts); fresh() copies it per tile."""

    def __init__(self, counts: np.ndarray):
        """counts: (..., n_contexts, n_symbols) int64, symbols by rank."""
        self.counts = np.ascontiguousarray(counts, np.int32)
        lead = self.counts.shape[:-1]
        self.meta = np.zeros(lead + (2,), np.int32)
        self.meta[..., M_SUM] = self.counts.sum(-1)
        self.cum = np.zeros(lead + (self.counts.shape[-1] + 1,), np.int32)
        c2, cum2, m2 = (a.reshape((-1,) + a.shape[-1:]) for a in (self.counts, self.cum, self.meta))
        for ctx in range(len(c2)):
            rebuild(c2, cum2, m2, ctx)

    def fresh(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.counts.copy(), self.cum.copy(), self.meta.copy()

    @staticmethod
    def start_counts(table: np.ndarray, order: np.ndarray) -> np.ndarray:
        """Static count table (..., alphabet) -> start counts by rank, summing to PRIOR_TOTAL.

        Integer-only normalisation (so every platform builds the same state): each symbol gets
        1 + its share of the remaining mass, rounded down; the remainder goes to rank 0.
        """
        c = np.asarray(table, np.int64)[..., order]
        spare = PRIOR_TOTAL - c.shape[-1]
        rows = 1 + (c * spare) // np.maximum(c.sum(-1, keepdims=True), 1)
        rows[..., 0] += PRIOR_TOTAL - rows.sum(-1)
        return rows

    @classmethod
    def uniform(cls, shape: tuple, alphabet: int, count: int) -> "Model":
        return cls(np.full(shape + (alphabet,), count, np.int64))

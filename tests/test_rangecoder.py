"""The v2 range coder and symbol layer: exact round trips, adaptation, escapes, errors, counting."""

import numpy as np
import pytest

from sae_model import Codec, EncoderSettings, blockcoder, planes
from sae_model import rangecoder as rc
from sae_model.tables import ALPHABET, ESC


def code(mode, st, buf, model, ctxs, vals, signed):
    counts, cum, meta = model
    rc.code_batch(mode, st, buf, counts, cum, meta, ctxs, vals, signed, counts.shape[0] - 1)


def encode(model_start, batches, signed):
    st, buf = rc.new_encoder(), np.empty(1 << 20, np.uint8)
    model = model_start.fresh()
    for ctxs, vals in batches:
        code(rc.ENCODE, st, buf, model, ctxs, vals.copy(), signed)
    rc.finish(st, buf)
    assert st[rc.S_ERROR] == 0
    return buf[:st[rc.S_POS]].copy()


def decode(model_start, data, shapes, signed):
    st = rc.new_decoder(data)
    model = model_start.fresh()
    out = []
    for ctxs in shapes:
        vals = np.zeros(len(ctxs), np.int64)
        code(rc.DECODE, st, data, model, ctxs, vals, signed)
        out.append(vals)
    return st, out


@pytest.mark.parametrize("seed,scale", [(0, 0.3), (1, 3.0), (2, 40.0)])
def test_signed_round_trip_with_escapes(seed, scale):
    """Laplace-like values, some far beyond ESC (bit lengths up to 30: several raw chunks)."""
    rng = np.random.default_rng(seed)
    n_ctx = 5
    model = rc.Model(rc.Model.start_counts(np.ones((n_ctx + 1, ALPHABET)), np.arange(ALPHABET)))
    batches = []
    for size in (1, 7, 500, 3000):
        vals = np.rint(rng.laplace(0, scale, size)).astype(np.int64)
        vals[rng.integers(size)] = int(rng.choice([-1, 1])) * int(rng.integers(ESC, 1 << 30))
        batches.append((rng.integers(0, n_ctx, size), vals))
    data = encode(model, batches, True)
    st, out = decode(model, data, [c for c, _ in batches], True)
    assert st[rc.S_ERROR] == 0 and st[rc.S_POS] == len(data)
    for (_, want), got in zip(batches, out):
        assert np.array_equal(want, got)


def test_unsigned_symbols_and_adaptation():
    """A skewed source costs far less than its uniform start once the model has adapted."""
    rng = np.random.default_rng(3)
    model = rc.Model.uniform((1,), 18, blockcoder.UNIFORM_COUNT)
    vals = np.where(rng.random(20_000) < 0.9, 3, rng.integers(0, 18, 20_000))
    ctxs = np.zeros(len(vals), np.int64)
    data = encode(model, [(ctxs, vals)], False)
    _, (got,) = decode(model, data, [ctxs], False)
    assert np.array_equal(got, vals)
    entropy_bits = -(0.9 + 0.1 / 18) * np.log2(0.9 + 0.1 / 18) - 17 * (0.1 / 18) * np.log2(0.1 / 18)
    assert len(data) * 8 < 1.05 * entropy_bits * len(vals) + 200
    assert len(data) * 8 < 0.25 * np.log2(18) * len(vals)  # the uniform start would cost log2(18) bits


def test_truncated_payload_is_an_error_not_garbage():
    rng = np.random.default_rng(4)
    model = rc.Model.uniform((1,), 18, blockcoder.UNIFORM_COUNT)
    vals = rng.integers(0, 18, 5000)
    ctxs = np.zeros(len(vals), np.int64)
    data = encode(model, [(ctxs, vals)], False)
    st, _ = decode(model, data[: len(data) // 2], [ctxs], False)
    assert st[rc.S_ERROR] & rc.ERR_OVERRUN


def test_start_counts_are_integer_and_normalised():
    table = np.random.default_rng(5).integers(0, 10_000, (3, 7, ALPHABET))
    rows = rc.Model.start_counts(table, blockcoder.RANK_ORDER)
    assert rows.dtype == np.int64 and rows.min() >= 1 and (rows.sum(-1) == rc.PRIOR_TOTAL).all()
    m = rc.Model(rows)
    assert (m.cum[..., -1] == rc.PROB_TOTAL).all() and (np.diff(m.cum, axis=-1) >= 1).all()


def test_rank_order_is_a_permutation_by_magnitude():
    assert sorted(blockcoder.RANK_ORDER.tolist()) == list(range(ALPHABET))
    assert blockcoder.RANK_VALUE[:5].tolist() == [0, 1, -1, 2, -2]


def test_symbol_counter_sees_every_coded_coefficient():
    codec = Codec.pretrained()
    rng = np.random.default_rng(6)
    img = np.clip(128 + rng.normal(0, 40, (40, 56, 3)), 0, 255).astype(np.uint8)
    counter = blockcoder.SymbolCounter(codec.arrays.K)
    levels = [plane for tile in codec.analyse(img, 70, EncoderSettings(subsample=False)) for plane in tile]
    for plane in levels:
        counter.add(plane)
    ac, dc, esc = counter.tables()
    # three full planes of 5 x 7 blocks, one DC value each
    assert dc.sum() == 3 * 5 * 7
    coded = 0
    for plane in levels:
        nz = plane.Q != 0
        last = np.where(nz.any(1), planes.NPOS - 1 - np.argmax(nz[:, ::-1], axis=1), -1)
        band_end = planes.BANDS[np.searchsorted(planes.BANDS, last, side="right")]
        coded += int(np.where(last >= 0, band_end, 0).sum())
    assert ac.sum() == coded
    assert esc.sum() == ac[..., [0, -1]].sum() + dc[..., [0, -1]].sum()  # one bit length per +-ESC

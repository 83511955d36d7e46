"""Format v4's contexts: the same levels as v3 in fewer bytes, its eob models starting from the
model file's learned eob table; format v5's raster-order DC: the same levels as v4 in fewer bytes."""

import numpy as np
import pytest
import torch

from sae_model import Codec, bitstream, blockcoder, formats
from sae_model.encoder import analyse
from sae_model.formats import v3, v4, v5
from sae_model.codec import DEFAULT_SETTINGS
from test_codec_tools import photo


@pytest.fixture(scope="module")
def codec():
    return Codec.pretrained()


def header(codec, img, q, settings=DEFAULT_SETTINGS, version=4):
    from sae_model.encoder import quality_to_step16
    h, w = img.shape[:2]
    step16 = quality_to_step16(q)
    sub = settings.subsampled(3, step16)
    return bitstream.Header(version, codec.fingerprint, w, h, "RGB", "RGB", bitstream.FLAG_SUBSAMPLED if sub else 0, q,
                            step16, settings.chroma_ratio64, settings.dc_ratio64, settings.bias256, settings.tile)


def pixels(module, codec, hd, payload):
    return [px for _, _, px in module.decode_tiles(codec, hd, payload)]


@pytest.mark.parametrize("q", [30, 80])
def test_v4_codes_the_same_levels_as_v3_in_fewer_bytes(codec, q):
    img = photo(160, 192, seed=5)
    hd = header(codec, img, q)
    tiles = list(analyse(codec.arrays, img, q, DEFAULT_SETTINGS))
    p3 = v3.encode_payload(codec, hd, tiles, DEFAULT_SETTINGS)
    p4 = v4.encode_payload(codec, hd, tiles, DEFAULT_SETTINGS)
    assert len(p4) < len(p3)
    for a, b in zip(pixels(v3, codec, hd, p3), pixels(v4, codec, hd, p4)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("q", [30, 80])
def test_v5_codes_the_same_levels_as_v4_in_fewer_bytes(codec, q):
    img = photo(160, 192, seed=7)
    hd = header(codec, img, q, version=5)
    tiles = list(analyse(codec.arrays, img, q, DEFAULT_SETTINGS))
    p4 = v4.encode_payload(codec, hd, tiles, DEFAULT_SETTINGS)
    p5 = v5.encode_payload(codec, hd, tiles, DEFAULT_SETTINGS)
    assert len(p5) < len(p4)
    for a, b in zip(pixels(v4, codec, hd, p4), pixels(v5, codec, hd, p5)):
        assert np.array_equal(a, b)
    assert formats.WRITER is v5


@pytest.mark.parametrize("grid, i, j, want", [
    (np.array([[10, 10, 200], [10, 10, 200], [10, 10, 0]]), 2, 2, 200),   # an edge running down: from above
    (np.array([[10, 10, 10], [10, 10, 10], [200, 200, 0]]), 2, 2, 200),   # an edge running across: from the left
    (np.array([[0, 7], [7, 7]]), 0, 0, 33),                             # the first mean: the origin
    (np.array([[20, 20, 20], [20, 20, 0]]), 1, 2, 20),                  # flat: the same value
])
def test_gap_follows_edges_of_the_dc_grid(grid, i, j, want):
    pred, bucket = blockcoder.gap_predict(grid.astype(np.int64), i, j, 33)
    assert pred == want
    assert 0 <= bucket < blockcoder.N_SPREAD


def test_learned_eob_table_saves_rate_and_changes_no_pixel(codec):
    assert codec.arrays.tables.eob is not None  # the shipped model is fitted for v4
    plain = Codec({k: v for k, v in codec.weights.items() if k != "eob_table"}, codec.config)
    img = photo(160, 192, seed=6)
    for q in (30, 80):
        fitted, uniform = codec.encode(img, quality=q), plain.encode(img, quality=q)
        assert len(fitted) < len(uniform)
        assert np.array_equal(np.asarray(codec.decode(fitted)), np.asarray(plain.decode(uniform)))


def test_symbol_counter_counts_one_eob_per_block(codec):
    counter = blockcoder.SymbolCounter(codec.arrays.K)
    planes = [p for tile in codec.analyse(photo(40, 56), 70) for p in tile]
    for p in planes:
        counter.add(p)
    eob = counter.eob_table()
    assert eob.shape == (2, blockcoder.N_EOB_CTX_V4, len(blockcoder.BANDS))
    assert eob.sum() == sum(p.hb * p.wb for p in planes)
    want = np.zeros(len(blockcoder.BANDS), np.int64)
    for p in planes:
        want += np.bincount(blockcoder.eob_of(p.Q), minlength=len(blockcoder.BANDS))
    assert np.array_equal(eob.sum((0, 1)), want)
    assert isinstance(codec.weights["eob_table"], torch.Tensor)

"""The exact engines on their own: byte-exact JPEG recompression and pixel-exact lossless items."""
from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
from fixtures_exact import exact_cases
from PIL import Image

from sae_model import jpeg_exact, lossless, pngfile
from sae_model.errors import CorruptStreamError, ImageTooLargeError, NotExactError

CASES = exact_cases()
JPEGS = [n for n, c in CASES.items() if c.expect == "jpeg"]
PIXELS = [n for n, c in CASES.items() if c.expect == "pixels"]
VERBATIM = [n for n, c in CASES.items() if c.expect == "verbatim"]


def _flip(data: bytes, pos: int) -> bytes:
    return data[:pos] + bytes([data[pos] ^ 0x10]) + data[pos + 1:]


@pytest.mark.parametrize("name", JPEGS)
def test_recompressed_jpeg_is_smaller_and_rebuilds_byte_for_byte(name):
    original = CASES[name].data
    stored = jpeg_exact.recompress(original)
    assert len(stored) < len(original)
    assert jpeg_exact.rebuild(stored) == original


def test_bytes_after_the_jpeg_end_marker_come_back_too():
    original = CASES["photo_baseline.jpg"].data + b"trailing bytes of a camera"
    assert jpeg_exact.rebuild(jpeg_exact.recompress(original)) == original


@pytest.mark.parametrize("data, reason", [
    (CASES["photo_cmyk.jpg"].data, "cannot transcode"),
    # SOF0 -> SOF9 turns the frame into an arithmetic-coded one
    (CASES["photo_grey.jpg"].data.replace(b"\xff\xc0", b"\xff\xc9", 1), "arithmetic-coded"),
    (CASES["rgb8.png"].data, "not a JPEG"),
])
def test_jpegs_that_cannot_come_back_exactly_are_refused_with_the_reason(data, reason):
    with pytest.raises(NotExactError, match=reason):
        jpeg_exact.recompress(data)


@pytest.mark.parametrize("keep", [0.3, 0.9])
def test_a_truncated_recompressed_jpeg_is_an_error_not_a_shorter_file(keep):
    stored = jpeg_exact.recompress(CASES["photo_baseline.jpg"].data)
    with pytest.raises(CorruptStreamError):
        jpeg_exact.rebuild(stored[:int(len(stored) * keep)])


def _exact_view(data: bytes) -> tuple[str, int, bytes, bytes]:
    px = lossless.read_pixels(data)
    return px.mode, px.bits, px.palette, px.samples.astype(">u2" if px.bits == 16 else np.uint8).tobytes()


@pytest.mark.parametrize("name", PIXELS)
def test_lossless_item_rebuilds_every_sample_at_the_source_mode_and_bit_depth(name):
    case = CASES[name]
    item, digest, px = lossless.encode(case.data)
    assert (px.mode, px.bits) == (case.mode, case.bits)
    assert len(item) < len(case.data)
    rebuilt = lossless.rebuild(item)
    assert rebuilt.startswith(pngfile.SIGNATURE)
    assert _exact_view(rebuilt) == _exact_view(case.data)
    assert lossless.pixel_sha256(lossless.read_pixels(rebuilt)) == digest == lossless.stored_sha256(item)
    with Image.open(io.BytesIO(rebuilt)) as im:  # an ordinary reader opens it
        assert im.size == (px.width, px.height)


def test_png_chunks_other_than_pixel_data_are_kept_byte_for_byte():
    original = CASES["rgb8.png"].data
    rebuilt = lossless.rebuild(lossless.encode(original)[0])
    kept = pngfile.kept_chunks(pngfile.chunks(original))
    assert kept == pngfile.kept_chunks(pngfile.chunks(rebuilt))
    assert any(kind == b"eXIf" for kind, _ in kept[0])


def test_a_palette_stays_a_palette_with_the_same_indices_and_colours():
    original = CASES["palette.png"].data
    rebuilt = lossless.rebuild(lossless.encode(original)[0])
    with Image.open(io.BytesIO(original)) as a, Image.open(io.BytesIO(rebuilt)) as b:
        assert b.mode == "P" and b.getpalette() == a.getpalette()
        assert b.info["transparency"] == a.info["transparency"]
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_a_sixteen_bit_tiff_comes_back_as_a_sixteen_bit_png_with_its_resolution():
    rebuilt = lossless.rebuild(lossless.encode(CASES["master16.tif"].data)[0])
    assert pngfile.header(pngfile.chunks(rebuilt)).bit_depth == 16
    with Image.open(io.BytesIO(rebuilt)) as im:
        assert [round(v) for v in im.info["dpi"]] == [300, 300]


@pytest.mark.parametrize("name, reason", [("animated.gif", "3 frames"), ("noise.png", "saves nothing"),
                                          ("photo_cmyk.jpg", "mode CMYK")])
def test_images_that_cannot_be_held_exactly_are_refused_with_the_reason(name, reason):
    with pytest.raises(NotExactError, match=reason):
        lossless.encode(CASES[name].data)


def test_two_bit_grey_png_is_refused_rather_than_widened():
    samples = np.tile(np.arange(4, dtype=np.uint8), (8, 4))[:, :, None]
    data = pngfile.write(samples, 2, 0, [], [])
    with pytest.raises(NotExactError, match="2-bit greyscale"):
        lossless.encode(data)


@pytest.mark.parametrize("name", ["rgb16.png", "palette.png", "rgba8.png"])
def test_a_flipped_byte_in_a_lossless_item_never_decodes_to_other_pixels(name):
    item = lossless.encode(CASES[name].data)[0]
    original = lossless.decode(item).samples
    head_end = 8 + struct.unpack(">I", item[4:8])[0]
    errors = 0
    for pos in [20, head_end - 2, *range(head_end + 20, len(item), max(1, (len(item) - head_end) // 12))]:
        try:
            back = lossless.decode(_flip(item, pos)).samples
        except CorruptStreamError:
            errors += 1
            continue
        assert np.array_equal(back, original), pos   # a byte the decoder ignores
    assert errors >= 10


def test_a_lossless_item_over_the_pixel_limit_is_refused_before_decoding():
    item = lossless.encode(CASES["rgb8.png"].data)[0]
    with pytest.raises(ImageTooLargeError, match="over the limit"):
        lossless.decode(item, max_pixels=1000)


def test_the_pixel_hash_covers_mode_size_bit_depth_and_samples():
    px = lossless.read_pixels(CASES["grey16.png"].data)
    base = lossless.pixel_sha256(px)
    variants = [
        lossless.Pixels("L", px.samples, 8),
        lossless.Pixels(px.mode, px.samples, 8),
        lossless.Pixels(px.mode, px.samples.reshape(px.width, px.height, 1), 16),
        lossless.Pixels(px.mode, px.samples ^ np.uint16(1), 16),
    ]
    assert all(lossless.pixel_sha256(v) != base for v in variants)
    assert json.loads(json.dumps(base)) == base


# ---- the fidelity levels' per-item decision (tasks/exact.py)

@pytest.mark.parametrize("fidelity, fmt, exact", [
    ("lossy", "JPEG", False), ("lossy", "PNG", False), ("jpeg-exact", "JPEG", True), ("jpeg-exact", "MPO", True),
    ("jpeg-exact", "PNG", False),
    ("lossless", "JPEG", True), ("lossless", "TIFF", True), ("lossless", None, True)])
def test_each_fidelity_level_sends_the_formats_it_names_to_the_exact_engines(fidelity, fmt, exact):
    from tasks import exact as exact_tasks

    assert exact_tasks.wants_exact(fidelity, fmt) is exact


def test_an_unknown_fidelity_is_refused_with_the_names_that_exist():
    from tasks import exact as exact_tasks

    assert exact_tasks.check_fidelity(None) == "lossy" and exact_tasks.check_fidelity(" Lossless") == "lossless"
    with pytest.raises(ValueError, match="lossy, jpeg-exact, lossless"):
        exact_tasks.check_fidelity("exact")


@pytest.mark.parametrize("name", list(CASES))
def test_every_case_becomes_the_row_kind_it_should_and_rebuilds_exactly(name):
    from tasks import exact as exact_tasks

    case = CASES[name]
    fmt = Image.open(io.BytesIO(case.data)).format
    row = exact_tasks.encode_exact(case.data, fmt, "lossless")
    assert row["kind"] == {"jpeg": "jpeg-exact", "pixels": "lossless", "verbatim": "passthrough"}[case.expect]
    if row["kind"] == "passthrough":
        assert row["data"] == case.data and row["reason"].startswith("kept verbatim (lossless): ")
        return
    data = exact_tasks.rebuild(row, max_pixels=10**8)
    if row["kind"] == "jpeg-exact":
        assert data == case.data
    else:
        assert _exact_view(data) == _exact_view(case.data)

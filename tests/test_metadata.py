"""Metadata never breaks coding: EXIF Pillow cannot write back is kept as the file's own bytes, or dropped with a
note; orientation still turns the pixels upright; the codec carries what was kept."""
from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from hostile import BROKEN_EXIF, jpeg_with_exif, jpeg_with_icc, tiff_block
from PIL import Image, ImageOps

from sae_model import Codec, metadata


@pytest.fixture(scope="module")
def codec():
    return Codec.pretrained()


def opened(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_malformed_rational_breaks_pillows_own_exif_writer():
    """The failure real archives hit: Pillow reads this EXIF, then raises when it writes it back."""
    image = opened(jpeg_with_exif(0, BROKEN_EXIF["rational_as_text"]))
    with pytest.raises(TypeError):
        ImageOps.exif_transpose(image)
    with pytest.raises(TypeError):
        image.getexif().tobytes()


@pytest.mark.parametrize("name", sorted(BROKEN_EXIF))
def test_broken_exif_encodes_and_keeps_the_files_own_bytes(codec, name):
    image = opened(jpeg_with_exif(1, BROKEN_EXIF[name]))
    raw = image.info["exif"]
    kept = metadata.upright(image)
    decoded = codec.decode(codec.encode(image, quality=60))
    if kept.orientation == 1:
        assert kept.exif == raw and decoded.info["exif"] == raw
        assert decoded.size == image.size
    else:  # the same block, only the orientation entry reset to 1
        assert decoded.info["exif"] == kept.exif != raw and len(kept.exif) == len(raw)
        assert opened_exif_orientation(kept.exif) == 1
        assert decoded.size == image.size[::-1]


def opened_exif_orientation(exif: bytes) -> int:
    carrier = Image.new("RGB", (1, 1))
    sink = io.BytesIO()
    carrier.save(sink, "PNG", exif=exif)
    return opened(sink.getvalue()).getexif().get(0x0112)


@pytest.mark.parametrize("name,orientation,note", [
    ("rational_as_text", 6, None),
    ("orientation_rational", 6, None),
    ("orientation_text", 1, "not applied"),
])
def test_orientation_is_applied_or_noted(name, orientation, note):
    image = opened(jpeg_with_exif(2, BROKEN_EXIF[name]))
    kept = metadata.upright(image)
    assert kept.orientation == orientation
    assert (note is None and kept.notes == ()) or any(note in n for n in kept.notes)
    if orientation == 6:
        expected = np.asarray(image.transpose(Image.Transpose.ROTATE_270))
        assert np.array_equal(np.asarray(kept.image), expected)


def test_exif_pillow_cannot_serialise_without_a_raw_block_is_dropped_with_a_note():
    image = Image.new("RGB", (8, 6))
    exif = image.getexif()
    exif[0x011A] = "abc"  # XResolution as text: tobytes() raises
    exif[0x0112] = 6
    kept = metadata.upright(image)
    assert kept.exif == b"" and kept.orientation == 6 and kept.image.size == (6, 8)
    assert any(n.startswith("EXIF dropped") for n in kept.notes)


def test_garbage_and_huge_icc_profiles_are_carried_as_bytes(codec):
    icc = np.random.default_rng(3).bytes(200_000)
    decoded = codec.decode(codec.encode(opened(jpeg_with_icc(3, icc)), quality=50))
    assert decoded.info["icc_profile"] == icc


def test_orientation_patch_finds_only_a_well_formed_entry():
    block = b"Exif\0\0" + tiff_block([(0x0112, 3, 1, struct.pack("<H", 8))])
    patched = metadata._patched_orientation(block)
    assert patched is not None and opened_exif_orientation(patched) == 1
    assert metadata._patched_orientation(b"Exif\0\0II*\0" + struct.pack("<I", 4000)) is None
    assert metadata._patched_orientation(b"Exif\0\0XX") is None

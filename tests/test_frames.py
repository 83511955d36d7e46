"""Animations keep every frame: the frame container, the APNG writer, and items coded frame by frame."""
from __future__ import annotations

import io

import numpy as np
import pytest
from hostile import apng, avif, fli, frames_of, gif, mpo, tiff_pages, webp
from PIL import Image

from sae_model import Codec, psnr
from tasks import frames, items, png


@pytest.fixture(scope="module")
def codec():
    return Codec.pretrained()


def sequence(count: int = 3) -> frames.Sequence:
    return frames.Sequence(7, 5, 0, tuple(frames.Frame(10.0 * n, b"SAEP", bytes([n]) * (n + 3)) for n in range(count)))


def test_container_round_trips():
    assert frames.unpack(frames.pack(sequence())) == sequence()


@pytest.mark.parametrize("damage", ["truncated", "padded", "flipped", "engine", "version", "one frame"])
def test_damaged_container_is_refused(damage):
    data = bytearray(frames.pack(sequence()))
    if damage == "truncated":
        data = data[:-9]
    elif damage == "padded":
        data += b"\0"
    elif damage == "flipped":
        data[30] ^= 1
    elif damage == "engine":
        data[29:33] = b"NOPE"  # first frame's engine tag; CRC fixed so only the tag is wrong
        import struct
        import zlib
        data[-4:] = struct.pack("<I", zlib.crc32(bytes(data[:-4])))
    elif damage == "version":
        data[4] = 9
    else:
        with pytest.raises(frames.ContainerError):
            frames.pack(sequence(1))
        return
    with pytest.raises(frames.ContainerError):
        frames.unpack(bytes(data))


def test_apng_writer_keeps_identical_frames_and_exact_durations():
    red, blue = Image.new("RGB", (6, 4), "red"), Image.new("RGB", (6, 4), "blue")
    durations = [10.0, 20.0, 1000 / 3, 40.0]
    data = png.apng_bytes([red, red, blue, blue], durations, 3)
    pictures, back, loop = frames_of(data)
    assert len(pictures) == 4 and loop == 3
    assert back == pytest.approx(durations)
    assert np.array_equal(pictures[0], pictures[1]) and not np.array_equal(pictures[1], pictures[2])


ANIMATIONS = {"gif": lambda: gif(1), "gif without loop": lambda: gif(2, count=3, loop=None), "apng": lambda: apng(3),
              "webp": lambda: webp(4), "avif": lambda: avif(5), "flc": lambda: fli(6), "tiff pages":
              lambda: tiff_pages(7, [(32, 24)] * 3), "mpo": lambda: mpo(8)}


@pytest.mark.parametrize("name", sorted(ANIMATIONS))
def test_every_frame_comes_back_with_its_duration(codec, name):
    data = ANIMATIONS[name]()
    row = items.encode_item(codec, data, {"quality": 75})
    original, durations, loop = frames_of(data)
    assert row["frames"] == len(original) > 1 and frames.is_container(row["data"])
    back = items.decode_png(row, lambda _: codec)
    pictures, back_durations, back_loop = frames_of(back)
    assert Image.open(io.BytesIO(back)).format == "PNG"
    assert len(pictures) == len(original) and back_durations == pytest.approx(durations) and back_loop == loop
    measured = [psnr(a[..., :3], b[..., :3]) for a, b in zip(original, pictures)]
    assert min(measured) > 28 and row["psnr"] == pytest.approx(min(row["frame_psnr"]))
    for a, b in zip(original, pictures):  # transparency (disposal resolved) comes back exactly
        assert np.array_equal(a[..., 3], b[..., 3])


def test_repeated_frames_are_stored_once(codec):
    row = items.encode_item(codec, fli(9, count=6, repeat=3), {"quality": 60})
    payloads = [f.payload for f in frames.unpack(row["data"]).frames]
    assert len(payloads) == 6 and len(set(payloads)) == 2


@pytest.mark.parametrize("data,reason", [
    (lambda: tiff_pages(10, [(32, 24), (24, 32)]), "one frame size"),
])
def test_what_an_apng_cannot_hold_is_refused(codec, data, reason):
    with pytest.raises(items.NotFaithful, match=reason):
        items.encode_item(codec, data(), {"quality": 50})

"""Decode cost is bounded by a pixel limit, not by what a header claims (issue #13 point 3)."""

import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

import sae_model
from sae_model import Codec, CodecError, EncoderSettings, ImageTooLargeError, bitstream, restore


@pytest.fixture(scope="module")
def codec():
    return Codec.pretrained()


def sections(stream: bytes) -> tuple[bytes, bytes]:
    """A v3 colour stream's payload: (prediction tools and restoration section, tiles)."""
    payload = stream[bitstream.HEADER_SIZE:-4]  # no EXIF, ICC or alpha in these streams
    used = 1 + restore.parse(payload[1:], 3)[1]
    return payload[:used], payload[used:]


def tiles_of(stream: bytes, count: int) -> list[bytes]:
    return bitstream.unpack_tiles(sections(stream)[1], count)


def claiming(stream: bytes, width: int, height: int, tiles: list[bytes]) -> bytes:
    """`stream`'s header with another size and payload, lengths and CRC made consistent."""
    payload = sections(stream)[0] + bitstream.pack_tiles(tiles)
    head = bytearray(stream[:bitstream.HEADER_SIZE])
    struct.pack_into("<II", head, 37, width, height)
    struct.pack_into("<I", head, 68, len(payload))
    body = bytes(head) + payload
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.fixture(scope="module")
def flat_tile_stream(codec):
    """One valid 1024x1024 tile of a flat image: a few dozen bytes."""
    img = np.full((1024, 1024, 3), 120, np.uint8)
    return codec.encode(img, quality=50, settings=EncoderSettings(tile=1024))


def test_a_small_stream_claiming_16384x16384_is_refused_before_anything_is_allocated(codec, flat_tile_stream):
    tile = tiles_of(flat_tile_stream, 1)[0]
    hostile = claiming(flat_tile_stream, 16384, 16384, [tile] * 256)  # valid tiles, valid CRC
    assert len(hostile) < 64_000 and 16384 * 16384 > sae_model.DEFAULT_MAX_PIXELS
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLargeError, match="--max-pixels"):
            codec.decode(hostile)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(hostile) + 1_000_000  # the stream's copies, never the claimed image
    assert issubclass(ImageTooLargeError, CodecError)


def test_a_raised_limit_decodes_the_repeated_tiles_tile_by_tile(codec, flat_tile_stream):
    """Under a raised limit the claim is honoured: 2x2 repeated tiles, the flat image four times."""
    tile = tiles_of(flat_tile_stream, 1)[0]
    hostile = claiming(flat_tile_stream, 2048, 2048, [tile] * 4)
    with pytest.raises(ImageTooLargeError):
        codec.decode(hostile, max_pixels=2048 * 2048 - 1)
    out = np.asarray(codec.decode(hostile, max_pixels=2048 * 2048))
    one = np.asarray(codec.decode(flat_tile_stream))
    assert out.shape == (2048, 2048, 3) and np.array_equal(out[1024:, 1024:], one)


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_a_legitimate_multi_tile_image_decodes_under_the_default_limit(codec, mode):
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:300, 0:290]
    px = np.clip(128 + 60 * np.sin(x / 9)[..., None] * np.cos(y / 13)[..., None] + rng.normal(0, 5, (300, 290, 4)),
                 0, 255).astype(np.uint8)
    img = Image.fromarray(px, "RGBA").convert(mode)
    data = codec.encode(img, quality=60, settings=EncoderSettings(tile=128))  # 3 x 3 tiles, partial ones
    out = codec.decode(data)
    assert out.mode == mode and out.size == (290, 300)
    if mode == "RGBA":
        assert np.array_equal(np.asarray(out)[:, :, 3], px[:, :, 3])  # alpha lossless
    with pytest.raises(ImageTooLargeError):
        codec.decode(data, max_pixels=290 * 300 - 1)


def test_the_decode_limit_of_get_and_decompress_is_the_codecs_and_admits_what_ingest_admits():
    from tasks import defaults
    assert defaults.INGEST.max_pixels == sae_model.DEFAULT_MAX_PIXELS

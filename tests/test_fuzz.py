"""10,000 mutated, truncated and spliced streams: only the library's exceptions, no hang."""

import struct
import zlib

import numpy as np
import pytest

from sae_model import Codec, CodecError


def _recrc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.timeout(120)
def test_fuzz_streams():
    codec = Codec.pretrained()
    rng = np.random.default_rng(1234)
    seeds = [codec.encode(rng.integers(0, 256, s, dtype=np.uint8), quality=q)
             for s, q in [((9, 11, 3), 50), ((16, 16), 20), ((5, 7, 4), 80), ((12, 30, 3), 5), ((1, 1, 2), 60)]]
    outcomes = {"error": 0, "image": 0}
    for i in range(10_000):
        data = bytearray(seeds[i % len(seeds)])
        kind = i % 5
        if kind == 0:  # random bit flips
            for _ in range(rng.integers(1, 4)):
                data[rng.integers(len(data))] ^= 1 << int(rng.integers(8))
        elif kind == 1:  # truncation
            data = data[: rng.integers(0, len(data))]
        elif kind == 2:  # splice two streams
            other = seeds[rng.integers(len(seeds))]
            data = data[: rng.integers(len(data))] + other[rng.integers(len(other)):]
        elif kind == 3:  # random bytes inserted / deleted
            p = int(rng.integers(len(data)))
            data = data[:p] + rng.bytes(int(rng.integers(0, 3))) + data[p + int(rng.integers(0, 3)):]
        else:  # payload garbage behind a valid CRC: exercises the decoder proper
            body = bytearray(data[:-4])
            lo = 80
            for _ in range(rng.integers(1, 6)):
                body[rng.integers(lo, len(body))] = int(rng.integers(256))
            data = _recrc(bytes(body))
        try:
            img = codec.decode(bytes(data))
            outcomes["image"] += 1
            assert img.size[0] >= 1 and img.size[1] >= 1
        except CodecError:
            outcomes["error"] += 1
    assert outcomes["error"] > 8000


@pytest.mark.timeout(120)
def test_fuzz_header_size_lies():
    """A valid stream whose width/height (and tile size) fields lie, CRC fixed: a CodecError or an
    image of exactly the claimed size. Claims the default limit refuses fail before any allocation
    (tests/test_decode_limit.py); the lies here stay small enough to decode in milliseconds."""
    codec = Codec.pretrained()
    rng = np.random.default_rng(99)
    seeds = [codec.encode(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8), quality=50),
             codec.encode(rng.integers(0, 256, (33, 2100, 4), dtype=np.uint8), quality=30)]
    sides = [1, 2, 15, 16, 17, 31, 1023, 1024, 1025, 2100, 16384, 65535, 1 << 20]
    outcomes = {"error": 0, "image": 0}
    for i in range(300):
        body = bytearray(seeds[i % 2][:-4])
        w, h = (int(rng.choice(sides)) if rng.random() < 0.6 else int(rng.integers(1, 1500)) for _ in range(2))
        struct.pack_into("<II", body, 37, w, h)
        if i % 4 == 3:
            struct.pack_into("<H", body, 54, int(rng.choice([16, 32, 64, 1024])))
        try:
            img = codec.decode(_recrc(bytes(body)))
            assert img.size == (w, h)
            outcomes["image"] += 1
        except CodecError:
            outcomes["error"] += 1
    assert outcomes["error"] > 200

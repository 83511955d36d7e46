"""Format v3's coding tools: each one pays on the content it is for, and the stream says which
were used (the decoder follows the stream, whatever the encoder's settings were)."""

import numpy as np
import pytest

from sae_model import Codec, CorruptStreamError, EncoderSettings
from sae_model.evaluate import bd_rate, psnr
from sae_model.formats import v3

NONE = dict(smooth=False, cfl=False, restoration=False)


@pytest.fixture(scope="module")
def codec():
    return Codec.pretrained()


def photo(h=96, w=128, seed=0):
    """Smooth colour fields and mild noise: where the 8x8 grid's flat blocks and ringing cost."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 90 * np.sin(x / 17 + k) * np.cos(y / 23 - k) for k in range(3)], -1)
    return np.clip(base + rng.normal(0, 3, (h, w, 3)), 0, 255).astype(np.uint8)


def colour_edge(h=96, w=128, seed=3):
    """Two colours across a soft wavy edge: chroma follows luma inside every block."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    t = 1 / (1 + np.exp(-3 * (8 * np.sin(x / 9.0) + 8 * np.cos(y / 7.0) - 0.3 * (y - h / 2))))[..., None]
    img = t * np.array([210, 70, 40]) + (1 - t) * np.array([30, 100, 200])
    return np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)


def bd_rate_of(codec, img, tool) -> float:
    """BD-rate (%) of the tool alone against no tool, qualities 20..80."""
    curves = []
    for settings in (EncoderSettings(**NONE), EncoderSettings(**{**NONE, tool: True})):
        pts = []
        for q in (20, 40, 60, 80):
            data = codec.encode(img, quality=q, settings=settings)
            pts.append((len(data), psnr(img, np.asarray(codec.decode(data)))))
        curves.append(pts)
    return bd_rate(*curves)


@pytest.mark.parametrize("tool,img", [("smooth", photo()), ("cfl", colour_edge()), ("restoration", photo())],
                         ids=["smooth-photo", "cfl-colour_edge", "restoration-photo"])
def test_each_tool_saves_rate_on_the_content_it_is_for(codec, tool, img):
    assert bd_rate_of(codec, img, tool) < -1.0


def test_tools_byte_and_filters_are_read_from_the_stream(codec):
    img = photo()
    data = codec.encode(img, quality=70)
    payload = data[72:-4]
    assert payload[0] == v3.ALL_TOOLS and payload[1] != 0  # luma filter classes in use
    # a decoder that ignored the tools byte would predict what the encoder did not
    plain = codec.encode(img, quality=70, settings=EncoderSettings(**NONE))
    assert plain[72] == 0 and plain[73:76] == b"\x00\x00\x00"
    assert psnr(img, np.asarray(codec.decode(plain))) > 25


def test_unknown_tool_bits_are_refused(codec):
    import struct
    import zlib
    data = bytearray(codec.encode(photo(), quality=40))
    data[72] |= 0x80
    body = bytes(data[:-4])
    with pytest.raises(CorruptStreamError):
        codec.decode(body + struct.pack("<I", zlib.crc32(body)))

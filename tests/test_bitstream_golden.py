"""Committed streams of every format version must keep decoding to the same pixels
(tests/golden/make_golden.py)."""

import json
from pathlib import Path

import pytest

import sae_model
from sae_model import Codec, ModelMismatchError

GOLDEN = Path(__file__).parent / "golden"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())


@pytest.fixture(scope="module")
def codec():
    c = Codec.load(GOLDEN / "model")
    assert c.fingerprint == MANIFEST["fingerprint"]
    return c


@pytest.mark.parametrize("name", sorted(MANIFEST["streams"]))
def test_golden_stream_decodes_identically(codec, name):
    import hashlib

    import numpy as np
    want = MANIFEST["streams"][name]
    data = (GOLDEN / f"{name}.sae").read_bytes()
    assert sae_model.read_header(data).format_version == want["format_version"]
    img = codec.decode(data)
    assert img.mode == want["mode"] and list(img.size) == want["size"]
    got = hashlib.sha256(img.mode.encode() + np.asarray(img).tobytes()).hexdigest()
    assert got == want["pixels_sha256"]
    assert bool(img.info.get("exif")) == want["exif"] and bool(img.info.get("icc_profile")) == want["icc"]


def test_every_readable_version_has_golden_streams():
    versions = {s["format_version"] for s in MANIFEST["streams"].values()}
    assert versions == set(sae_model.bitstream.READABLE_VERSIONS)
    assert sae_model.FORMAT_VERSION == max(versions)


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_golden_streams_need_their_model(version):
    data = (GOLDEN / f"v{version}_rgb_24x20_q50.sae").read_bytes()
    with pytest.raises(ModelMismatchError):
        Codec.pretrained().decode(data)

"""One item's failure never fails another: compress_batch and restore isolate every item.

The failures are injected through a codec that raises for one chosen image (the real counterpart, real files
breaking the real codec, is tests/test_hostile.py)."""
from __future__ import annotations

import hashlib

import pytest
from hostile import photo

from sae_model import Codec
from tasks import compress as units
from tasks import shards
from tasks.commit import tally


class Failing:
    """The real codec, except that encoding an image of width ``width`` raises ``error``."""

    def __init__(self, codec: Codec, width: int, error: Exception):
        self.codec, self.width, self.error = codec, width, error
        self.fingerprint = codec.fingerprint

    def encode(self, image, **rate):
        if image.size[0] == self.width:
            raise self.error
        return self.codec.encode(image, **rate)

    def decode(self, data):
        return self.codec.decode(data)


@pytest.fixture
def batch(tmp_path):
    """Four PNG files in a source folder, their batch items, and a shard set whose model is the real one."""
    codec = Codec.pretrained()
    src = tmp_path / "src"
    src.mkdir()
    items = []
    for n, width in enumerate((40, 41, 42, 43)):
        path = src / f"img{n}.png"
        photo(n, width, 32).save(path)
        items.append({"id": hashlib.sha256(path.read_bytes()).hexdigest(), "paths": [path.name], "status": "ok",
                      "format": "PNG", "reason": None})
    return codec, src, tmp_path / "set", items


@pytest.mark.parametrize("error", [TypeError("bad operand type for abs(): 'str'"), MemoryError(), KeyError("x"),
                                   RuntimeError("numba kernel failed")])
def test_an_item_that_breaks_the_encoder_is_stored_verbatim_and_the_rest_coded(batch, error, monkeypatch):
    codec, src, sharddir, items = batch
    monkeypatch.setitem(units._CODECS, units.model_dir(str(sharddir), codec.fingerprint), Failing(codec, 41, error))
    result = units.compress_batch(str(src), str(sharddir), "job", 0, items, codec.fingerprint, "test", {"quality": 50},
                                  "lossy")
    kinds = {item["paths"][0]: item["kind"] for item in result["items"]}
    assert kinds == {"img0.png": "coded", "img1.png": "passthrough", "img2.png": "coded", "img3.png": "coded"}
    fs, root = shards.open_dir(str(sharddir))
    stored = {row["paths"][0]: row for row in shards.read_shard(fs, f"{root}/{result['shard']['name']}").to_pylist()}
    assert stored["img1.png"]["reason"].startswith(f"not coded: {type(error).__name__}")
    assert stored["img1.png"]["data"] == (src / "img1.png").read_bytes()
    assert result["problems"] == [] and result["skipped"] == []


def test_unreadable_and_changed_items_are_skipped_with_a_reason_and_the_rest_stored(batch, monkeypatch):
    codec, src, sharddir, items = batch
    monkeypatch.setitem(units._CODECS, units.model_dir(str(sharddir), codec.fingerprint), codec)
    (src / "img1.png").unlink()
    (src / "img2.png").write_bytes(b"changed")
    result = units.compress_batch(str(src), str(sharddir), "job", 0, items, codec.fingerprint, "test", {"quality": 50},
                                  "lossy")
    assert sorted(item["paths"][0] for item in result["items"]) == ["img0.png", "img3.png"]
    skipped = {entry["path"]: entry["reason"] for entry in result["skipped"]}
    assert set(skipped) == {"img1.png", "img2.png"} and "run ingest again" in skipped["img2.png"]
    assert len(result["problems"]) == 2
    counts = {"files": 4, **dict.fromkeys(shards.KINDS, 0), "duplicate": 0, "skipped": 0}
    tally(counts, result["items"], result["skipped"])
    assert shards.accounted(counts) == counts["files"] == 4


def test_a_row_that_cannot_be_rebuilt_fails_alone(batch, monkeypatch):
    codec, src, sharddir, items = batch
    monkeypatch.setitem(units._CODECS, units.model_dir(str(sharddir), codec.fingerprint), codec)
    result = units.compress_batch(str(src), str(sharddir), "job", 0, items, codec.fingerprint, "test", {"quality": 50},
                                  "lossy")
    fs, root = shards.open_dir(str(sharddir))
    table = shards.read_shard(fs, f"{root}/{result['shard']['name']}").to_pylist()
    broken = dict(table[0], text=[("Title", "\ud800")])  # text that cannot be written as UTF-8
    with pytest.raises(units.ItemError, match="cannot be rebuilt"):
        units.restore(str(sharddir), broken)
    assert units.restore(str(sharddir), table[1]).startswith(b"\x89PNG")

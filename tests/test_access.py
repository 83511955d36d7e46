"""`get` and `verify` on small shard sets written in place (verbatim items; no Prefect, no Dask)."""
from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import pytest

from flows.access import get_image, verify
from tasks.errors import ConfigError
from tasks import shards, txlog


def write_set(root: Path, files: dict[str, bytes], per_shard: int = 8, coded: dict[str, object] | None = None) -> dict:
    """A committed shard set storing ``files`` (path -> bytes) verbatim, ``per_shard`` items per shard.

    ``coded`` (path -> PIL image) adds items coded with the shipped model, saved under models/.
    """
    fs, base = shards.open_dir(str(root))
    manifest = txlog.empty_manifest()
    index = []
    rows = [{"id": hashlib.sha256(data).hexdigest(), "paths": [path], "kind": "passthrough",
             "original_bytes": len(data), "data": data, "compressed_bytes": len(data),
             "crc32": zlib.crc32(data), "reason": "test"} for path, data in files.items()]
    if coded:
        from sae_model import Codec

        codec = Codec.pretrained()
        codec.save(root / "models" / codec.fingerprint)
        manifest["models"][codec.fingerprint] = {"uri": "sae_model:pretrained", "version": None,
                                                 "path": f"models/{codec.fingerprint}"}
        for path, image in coded.items():
            stream = codec.encode(image, quality=50)
            rows.append({"id": hashlib.sha256(path.encode()).hexdigest(), "paths": [path], "kind": "coded",
                         "width": image.width, "height": image.height, "mode": image.mode, "format": "PNG",
                         "original_bytes": 0, "data": stream, "compressed_bytes": len(stream),
                         "crc32": zlib.crc32(stream), "model_fingerprint": codec.fingerprint})
    for n in range(0, len(rows), per_shard):
        part = rows[n:n + per_shard]
        data = shards.shard_bytes(part, {})
        name = f"shards/test-{n:05d}.parquet"
        shards.put_atomic(fs, f"{base}/{name}", data)
        manifest["shards"].append({"name": name, "rows": len(part), "bytes": len(data),
                                   "sha256": shards.sha256_hex(data), "model_fingerprint": None, "job": "test"})
        index += [{"path": row["paths"][0], "id": row["id"], "shard": name, "kind": row["kind"]} for row in part]
    data = shards.index_bytes(index)
    shards.put_atomic(fs, f"{base}/index/test-0000.parquet", data)
    manifest["index"].append({"name": "index/test-0000.parquet", "rows": len(index), "bytes": len(data),
                              "sha256": shards.sha256_hex(data)})
    n, c = len(files), len(coded or {})
    manifest["totals"] = {"files": n + c, "items": n + c, "coded": c, "passthrough": n, "duplicate": 0,
                          "skipped": 0, "original_bytes": 0, "stored_bytes": 0}
    return txlog.write_manifest(fs, base, manifest)


FILES = {f"f/{n:02d}.bin": f"file number {n}".encode() for n in range(20)}


@pytest.fixture(scope="module")
def passthrough_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("set")
    write_set(root, FILES)
    return root


def test_set_written_in_place_verifies(passthrough_set):
    assert verify(str(passthrough_set))["problems"] == []


@pytest.mark.parametrize("digits", [64, 12, 5])
def test_get_accepts_a_unique_id_prefix(passthrough_set, tmp_path, digits):
    item = hashlib.sha256(FILES["f/07.bin"]).hexdigest()
    ids = [hashlib.sha256(data).hexdigest() for data in FILES.values()]
    assert sum(i.startswith(item[:digits]) for i in ids) == 1
    result = get_image(str(passthrough_set), item[:digits], str(tmp_path / "x"))
    assert result["problems"] == [] and (tmp_path / "x").read_bytes() == FILES["f/07.bin"]


def test_get_says_when_an_id_prefix_is_ambiguous(passthrough_set, tmp_path):
    ids = [hashlib.sha256(data).hexdigest() for data in FILES.values()]
    shared = next(i[0] for i in ids if sum(j[0] == i[0] for j in ids) > 1)  # 20 ids, 16 first digits
    with pytest.raises(ConfigError, match=f"start of [0-9]+ image ids.*give more digits"):
        get_image(str(passthrough_set), shared, str(tmp_path / "x"))
    with pytest.raises(ConfigError, match="neither an original path nor"):
        get_image(str(passthrough_set), "f/99.bin", str(tmp_path / "x"))


@pytest.fixture(scope="module")
def coded_set(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("coded") / "set"
    write_set(root, dict(list(FILES.items())[:3]), coded={"c/red.png": Image.new("RGB", (24, 16), (200, 30, 30))})
    return root


@pytest.mark.parametrize("damage", ["replaced", "truncated", "deleted", "config deleted", "config not JSON"])
def test_verify_checks_every_model_file_decoding_needs(coded_set, tmp_path, damage):
    import shutil

    copy = tmp_path / "set"
    shutil.copytree(coded_set, copy)
    (folder,) = (copy / "models").iterdir()
    weights, config = folder / "weights.pt", folder / "config.json"
    {"replaced": lambda: weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8),
     "truncated": lambda: weights.write_bytes(weights.read_bytes()[:4096]),
     "deleted": weights.unlink, "config deleted": config.unlink,
     "config not JSON": lambda: config.write_text("{"),
     }[damage]()
    problems = verify(str(copy))["problems"]
    kind = "missing" if "deleted" in damage else "corrupt"
    assert problems and all(p.startswith(f"{kind}: model {folder.name[:12]}") for p in problems), problems
    assert verify(str(coded_set))["problems"] == []


@pytest.mark.parametrize("path", ["../escape.bin", "/etc/absolute.bin", "a/../../up.bin"])
def test_verify_reports_index_paths_that_would_escape(tmp_path, path):
    write_set(tmp_path / "set", {path: b"hostile", "fine.bin": b"fine"})
    problems = verify(str(tmp_path / "set"))["problems"]
    assert len(problems) == 1 and problems[0].startswith("unsafe:") and path in problems[0]


def test_unreadable_newest_manifest_reads_the_previous_generation_and_says_so(coded_set, tmp_path):
    import shutil

    copy = tmp_path / "set"
    shutil.copytree(coded_set, copy)
    fs, root = shards.open_dir(str(copy))
    current = txlog.read_manifest(fs, root)
    txlog.write_manifest(fs, root, current)
    (copy / txlog.log_name(current["generation"] + 1)).write_text('{"manifest_version": 2, "gen')
    result = verify(str(copy))
    assert len(result["problems"]) == 1 and "using generation" in result["problems"][0]
    got = get_image(str(copy), "f/01.bin", str(tmp_path / "one"))
    assert (tmp_path / "one").read_bytes() == FILES["f/01.bin"] and "using generation" in got["problems"][0]

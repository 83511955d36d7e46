"""The fidelity levels end to end: a mixed archive through compress -> verify -> decompress / get.

lossy codes every image (animations as every frame); jpeg-exact and lossless give every JPEG back byte for byte
and (lossless) every other image pixel for pixel at its mode and bit depth; verify catches a changed byte in any
stored item (CRC, content hash, or, with --decode, the exactness hash).
"""
from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fixtures_exact import exact_cases
from PIL import Image, ImageOps

from sae_model import lossless

pytestmark = pytest.mark.slow
CASES = exact_cases()


def _format(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as im:
        return im.format


def expected_kind(fidelity: str, name: str) -> str:
    case = CASES[name]
    if fidelity == "lossy":
        return "coded"
    if fidelity == "jpeg-exact":
        if _format(case.data) != "JPEG":
            return "coded"
        return "jpeg-exact" if case.expect == "jpeg" else "passthrough"
    return {"jpeg": "jpeg-exact", "pixels": "lossless", "verbatim": "passthrough"}[case.expect]


def manifest(sharddir: Path) -> dict:
    from tasks import shards, txlog

    return txlog.read_manifest(*shards.open_dir(str(sharddir)))


def rows(sharddir: Path) -> dict[str, dict]:
    out = {}
    for entry in manifest(sharddir)["shards"]:
        for row in pq.read_table(sharddir / entry["name"]).to_pylist():
            for path in row["paths"]:
                out[path] = dict(row, shard=entry["name"])
    return out


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mixed") / "src"
    folder.mkdir()
    for name, case in CASES.items():
        (folder / name).write_bytes(case.data)
    return folder


@pytest.fixture(scope="module")
def compress_at(archive, tmp_path_factory, prefect_harness):
    """fidelity -> (shard set, result): the archive is ingested once, each level compresses the same catalog."""
    from flows.compress import compress_flow
    from flows.ingest import ingest_flow

    workdir = tmp_path_factory.mktemp("workdir")
    ingest_flow(source=str(archive), out=str(workdir))
    done: dict[str, tuple[Path, dict]] = {}

    def run(fidelity: str) -> tuple[Path, dict]:
        if fidelity not in done:
            out = tmp_path_factory.mktemp(fidelity) / "set"
            done[fidelity] = out, compress_flow(source=str(workdir), out=str(out), fidelity=fidelity,
                                                shard_max_items=6)
        return done[fidelity]
    return run


LEVELS = ["jpeg-exact", "lossless"]
EXACT_ITEMS = [(f, n) for f in LEVELS for n in CASES if expected_kind(f, n) in ("jpeg-exact", "lossless")]
VERBATIM_ITEMS = [(f, n) for f in LEVELS for n in CASES if expected_kind(f, n) == "passthrough"]


@pytest.mark.parametrize("fidelity", ["lossy", *LEVELS])
def test_every_file_is_stored_as_its_fidelity_level_says(compress_at, fidelity):
    out, result = compress_at(fidelity)
    assert result["problems"] == []
    stored = rows(out)
    assert {name: stored[name]["kind"] for name in CASES} == {name: expected_kind(fidelity, name) for name in CASES}
    for name, row in stored.items():
        if row["kind"] in ("jpeg-exact", "lossless"):
            assert row["exact_sha256"] and row["compressed_bytes"] < row["original_bytes"]
        if row["kind"] == "passthrough":
            assert row["reason"].startswith(f"kept verbatim ({fidelity}): ")


@pytest.mark.parametrize("fidelity", LEVELS)
def test_manifest_and_report_count_each_kind_and_the_bytes_it_saved(compress_at, fidelity):
    out, result = compress_at(fidelity)
    m = manifest(out)
    kinds = [expected_kind(fidelity, name) for name in CASES]
    totals = m["totals"]
    for kind in ("coded", "passthrough", "jpeg-exact", "lossless"):
        assert totals[kind] == kinds.count(kind)
        assert totals["kinds"].get(kind, {"items": 0})["items"] == kinds.count(kind)
    saved = totals["kinds"]["jpeg-exact"]
    jpegs = [c.data for n, c in CASES.items() if expected_kind(fidelity, n) == "jpeg-exact"]
    assert saved["original_bytes"] == sum(map(len, jpegs)) > saved["stored_bytes"]
    assert m["jobs"][-1]["parameters"]["fidelity"] == fidelity
    line = next(line for line in result["report"] if line.startswith("catalog: "))
    assert f"{kinds.count('jpeg-exact')} jpeg-exact" in line and f"{kinds.count('passthrough')} passthrough" in line
    assert any(line.startswith("jpeg-exact: ") and "saved" in line for line in result["report"])
    page = (out / "report.html").read_text()
    for kind in ("jpeg-exact", "lossless", "passthrough"):
        if kinds.count(kind):
            assert f"id='{kind}'>{kinds.count(kind)}<" in page and f"id='bytes_{kind}'>" in page, kind


@pytest.mark.parametrize("fidelity", ["lossy", *LEVELS])
def test_decompress_gives_jpegs_back_byte_for_byte_and_images_pixel_for_pixel(compress_at, fidelity, tmp_path):
    from flows.compress import decompress_flow

    out, _ = compress_at(fidelity)
    restored = tmp_path / "back"
    result = decompress_flow(sharddir=str(out), out=str(restored))
    assert result["problems"] == [] and result["written"] == len(CASES)
    for name, case in CASES.items():
        kind = expected_kind(fidelity, name)
        if kind in ("jpeg-exact", "passthrough"):
            assert (restored / name).read_bytes() == case.data, name
        elif kind == "lossless":
            back = lossless.read_pixels((restored / (name if name.endswith(".png") else f"{name}.png")).read_bytes())
            source = lossless.read_pixels(case.data)
            assert (back.mode, back.bits, back.palette) == (source.mode, source.bits, source.palette), name
            assert back.samples.dtype == source.samples.dtype and np.array_equal(back.samples, source.samples), name
        else:  # lossy: a PNG of the upright size, every frame of an animation
            with Image.open(io.BytesIO(case.data)) as source, \
                    Image.open(restored / (name if name.endswith(".png") else f"{name}.png")) as back:
                assert back.format == "PNG" and back.size == ImageOps.exif_transpose(source).size, name
                assert getattr(back, "n_frames", 1) == getattr(source, "n_frames", 1), name


@pytest.mark.parametrize("fidelity, name", [("jpeg-exact", "photo_progressive.jpg"), ("lossless", "photo_baseline.jpg"),
                                            ("lossless", "master16.tif"), ("lossless", "palette.png")])
def test_get_returns_one_exact_original(compress_at, fidelity, name, tmp_path):
    from flows.access import get_image

    out, _ = compress_at(fidelity)
    result = get_image(str(out), name, str(tmp_path / "one"))
    assert result["problems"] == []
    data = (tmp_path / "one").read_bytes()
    kind = expected_kind(fidelity, name)
    if kind == "jpeg-exact":
        assert data == CASES[name].data and "original bytes" in result["report"][0]
    else:
        assert kind == "lossless" and lossless.pixel_sha256(lossless.read_pixels(data)) == lossless.pixel_sha256(
            lossless.read_pixels(CASES[name].data))
        assert "pixel-exact" in result["report"][0]


@pytest.mark.parametrize("fidelity", LEVELS)
def test_verify_decode_checks_every_exact_item(compress_at, fidelity):
    from flows.access import verify

    out, _ = compress_at(fidelity)
    result = verify(str(out), decode=True)
    assert result["problems"] == [] and result["report"][0].endswith("OK")


def _rewrite_row(sharddir: Path, name: str, change, fix_crc: bool = True) -> None:
    """Replace one item's payload in its shard, with the manifest entry updated (and the CRC, with ``fix_crc``)."""
    row = rows(sharddir)[name]
    path = sharddir / row["shard"]
    table = pq.read_table(path)
    data = table.column("data").to_pylist()
    at = table.column("id").to_pylist().index(row["id"])
    data[at] = change(data[at])
    crc = table.column("crc32").to_pylist()
    crc[at] = zlib.crc32(data[at]) if fix_crc else crc[at]
    table = table.set_column(table.schema.get_field_index("data"), "data", pa.array(data, pa.large_binary()))
    table = table.set_column(table.schema.get_field_index("crc32"), "crc32", pa.array(crc, pa.int64()))
    pq.write_table(table, path)
    from tasks import shards, txlog

    fs, root = shards.open_dir(str(sharddir))
    m = txlog.read_manifest(fs, root)
    for entry in m["shards"]:
        if entry["name"] == row["shard"]:
            entry.update(bytes=path.stat().st_size, sha256=shards.sha256_hex(path.read_bytes()))
    txlog.write_manifest(fs, root, m)


@pytest.mark.parametrize("fidelity, name", EXACT_ITEMS)
def test_verify_catches_a_flipped_byte_in_any_exact_item(compress_at, fidelity, name, tmp_path):
    import shutil

    from flows.access import verify

    out, _ = compress_at(fidelity)
    item = rows(out)[name]["id"][:12]
    copy = tmp_path / "set"
    shutil.copytree(out, copy)
    _rewrite_row(copy, name, lambda d: d[:len(d) // 2] + bytes([d[len(d) // 2] ^ 1]) + d[len(d) // 2 + 1:],
                 fix_crc=False)
    assert any(item in p and "CRC" in p for p in verify(str(copy))["problems"])

    shutil.rmtree(copy)
    shutil.copytree(out, copy)
    stored = rows(out)
    other = next(n for n in CASES if expected_kind(fidelity, n) == expected_kind(fidelity, name)
                 and stored[n]["exact_sha256"] != stored[name]["exact_sha256"])
    swapped = stored[other]["data"]  # a valid item of the same kind, but another image
    _rewrite_row(copy, name, lambda _: swapped)   # CRC and shard hash made consistent: only exactness can tell
    problems = verify(str(copy), decode=True)["problems"]
    assert any(item in p and "sha256" in p for p in problems), problems


@pytest.mark.parametrize("fidelity, name", VERBATIM_ITEMS)
def test_verify_catches_a_flipped_byte_in_any_verbatim_item(compress_at, fidelity, name, tmp_path):
    import shutil

    from flows.access import verify

    out, _ = compress_at(fidelity)
    item = rows(out)[name]["id"][:12]
    for fix_crc, says in ((False, "CRC"), (True, "content hash")):
        copy = tmp_path / f"set-{fix_crc}"
        shutil.copytree(out, copy)
        _rewrite_row(copy, name, lambda d: bytes([d[0] ^ 1]) + d[1:], fix_crc=fix_crc)
        assert any(item in p and says in p for p in verify(str(copy))["problems"]), (fix_crc, name)


def test_an_unknown_fidelity_is_a_config_error(archive, tmp_path, prefect_harness):
    from flows.compress import compress_flow
    from flows.settings import ConfigError

    with pytest.raises(ConfigError, match="lossy, jpeg-exact, lossless"):
        compress_flow(source=str(archive), out=str(tmp_path / "s"), fidelity="exact")

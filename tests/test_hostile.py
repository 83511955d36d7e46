"""A hostile archive end to end: every file comes back, each with the outcome it must have.

One tar holds broken EXIF of several kinds, broken ICC, text chunks, animations of every kind, multi-frame files,
truncated and corrupt files next to good ones, and one name three times; compress -> verify --decode ->
decompress / get, then every file is checked against what it must have become (tests/hostile.py).
"""
from __future__ import annotations

import io

import pytest
from hostile import cases, check_decoded, check_stored, photo, restored_name, stored_rows, write_tar
from PIL import Image

pytestmark = pytest.mark.slow
CASES = cases()
# The same name three times in the tar: each member is catalogued under its own name (stem~n.ext).
REPEATED = [("good/photo.jpg", None), ("good/photo~2.jpg", photo(90)), ("good/photo~3.jpg", photo(91))]


def _jpeg(image: Image.Image) -> bytes:
    sink = io.BytesIO()
    image.save(sink, "JPEG", quality=90)
    return sink.getvalue()


@pytest.fixture(scope="module")
def expected() -> dict:
    """Catalog path -> (bytes, case) for every member of the tar."""
    out = {case.path: (case.data, case) for case in CASES}
    first = out["good/photo.jpg"]
    for name, image in REPEATED[1:]:
        out[name] = (_jpeg(image), first[1])
    return out


@pytest.fixture(scope="module")
def compressed(tmp_path_factory, expected, prefect_harness):
    from flows.compress import compress_flow

    base = tmp_path_factory.mktemp("hostile")
    members = [(case.path, case.data) for case in CASES]
    members += [("good/photo.jpg", expected[name][0]) for name, _ in REPEATED[1:]]
    tar = write_tar(base / "hostile.tar", members)
    result = compress_flow(source=str(tar), out=str(base / "set"), shard_max_items=8, quality=75)
    return base / "set", result


def test_every_file_is_stored_with_its_outcome(compressed, expected):
    sharddir, result = compressed
    assert result["problems"] == []
    from tasks import shards, txlog

    totals = txlog.read_manifest(*shards.open_dir(str(sharddir)))["totals"]
    kinds = [case.kind for _, case in expected.values()]
    assert totals["files"] == len(expected)
    assert (totals["coded"], totals["passthrough"], totals["duplicate"], totals["skipped"]) == (
        kinds.count("coded"), kinds.count("passthrough"), kinds.count("duplicate"), 0)
    stored = stored_rows(sharddir)
    for path, (_, case) in expected.items():
        check_stored(path, stored[path], case)


def test_verify_decodes_every_frame(compressed):
    from flows.access import verify

    result = verify(str(compressed[0]), decode=True)
    assert result["problems"] == [] and result["report"][0].endswith("OK")


def test_decompress_gives_every_file_back(compressed, expected, tmp_path):
    from flows.compress import decompress_flow

    out = tmp_path / "back"
    result = decompress_flow(sharddir=str(compressed[0]), out=str(out))
    assert result["problems"] == [] and result["written"] == len(expected)
    for path, (data, case) in expected.items():
        if case.kind == "passthrough":
            assert (out / path).read_bytes() == data, path
            continue
        check_decoded(path, data, (out / restored_name(path, case)).read_bytes(), case)


def test_get_writes_an_animation_with_every_frame(compressed, expected, tmp_path):
    from flows.access import get_image

    result = get_image(str(compressed[0]), "anim/loop.gif", str(tmp_path / "one.png"))
    assert result["problems"] == []
    data, case = expected["anim/loop.gif"]
    check_decoded("anim/loop.gif", data, (tmp_path / "one.png").read_bytes(), case)

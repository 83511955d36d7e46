"""Shard sets written by older saepress keep working: the committed v1 set (tests/fixtures/make_v1_set.py: two
jobs, coded, verbatim, duplicate, jpeg-exact, lossless, an animation and a path stored again with new content)
verifies with --decode, and `get` and decompress give every file back as it came back when the set was made."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from fixtures.make_v1_set import MODEL, pixels_sha256
from flows.access import get_image, verify
from tasks import compress as units
from tasks import plan, shards
from tasks.access import open_shard_set

FIXTURE = Path(__file__).resolve().parent / "fixtures"
EXPECTED = json.loads((FIXTURE / "v1_set.expected.json").read_text())


@pytest.fixture
def v1_set(tmp_path) -> Path:
    """A copy of the committed set (readers must not need to write it), with the golden model's weights put back."""
    out = tmp_path / "v1_set"
    shutil.copytree(FIXTURE / "v1_set", out)
    for folder in (out / "models").iterdir():
        shutil.copy(MODEL / "weights.pt", folder / "weights.pt")
    return out


def came_back_as_made(name: str, data: bytes) -> bool:
    want = EXPECTED[name]
    if "bytes_sha256" in want:
        return hashlib.sha256(data).hexdigest() == want["bytes_sha256"]
    return pixels_sha256(data) == want["pixels_sha256"]


def test_a_v1_set_verifies_with_every_item_decoded(v1_set):
    result = verify(str(v1_set), decode=True)
    assert result["problems"] == []
    assert "8 item(s), 8 path(s)" in result["report"][0] and "8 decoded" in result["report"][0]


def test_get_gives_every_file_of_a_v1_set_back(v1_set, tmp_path):
    for name in EXPECTED:
        path = name[:-len(".png")] if name.endswith(".jpg.png") or name.endswith(".gif.png") else name
        result = get_image(str(v1_set), path, str(tmp_path / "one"))
        assert result["problems"] == [], name
        assert came_back_as_made(name, (tmp_path / "one").read_bytes()), name


def test_decompress_writes_every_file_of_a_v1_set_back(v1_set, tmp_path):
    """What decompress runs on each Dask worker, one call per shard, without the cluster (flow tests cover it)."""
    _, _, manifest = open_shard_set(str(v1_set))
    targets, files, problems = plan.plan_decompress(shards.read_index(*shards.open_dir(str(v1_set)), manifest))
    entries = {entry["name"]: entry for entry in manifest["shards"]}
    for shard, items in targets.items():
        problems += units.decompress_shard(str(v1_set), shard, items, str(tmp_path / "back"), entries[shard])["problems"]
    assert problems == [] and files == len(EXPECTED)
    written = {str(p.relative_to(tmp_path / "back")): p.read_bytes()
               for p in (tmp_path / "back").rglob("*") if p.is_file()}
    assert sorted(written) == sorted(EXPECTED)
    assert all(came_back_as_made(name, data) for name, data in written.items())


@pytest.mark.slow
def test_the_next_job_on_a_v1_set_writes_the_log_and_loses_nothing(v1_set, prefect_harness):
    from flows.compress import compress_flow
    from tasks import txlog

    before = txlog.read_manifest(*shards.open_dir(str(v1_set)))
    # The set is its own WORKDIR (its catalog.parquet): everything catalogued is stored, so the job only commits.
    result = compress_flow(source=str(v1_set), out=str(v1_set), model=str(MODEL))
    assert result["problems"] == [] and result["totals"]["new_items"] == 0
    after = txlog.read_manifest(*shards.open_dir(str(v1_set)))
    assert after["manifest_version"] == 2 and after["shards"] == before["shards"]
    assert after["totals"]["files"] == before["totals"]["files"] and len(after["jobs"]) == 3
    assert verify(str(v1_set), decode=True)["problems"] == []

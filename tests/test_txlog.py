"""The committed state as a log (manifest version 2): small commits, checkpoints, fallbacks, version-1 sets."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tasks import shards, txlog

V1_SET = Path(__file__).resolve().parent / "fixtures" / "v1_set"


def _entry(part: str, n: int) -> dict:
    return {"name": f"{part}/job-{n:06d}.parquet", "rows": 512, "bytes": 40_000_000 + n, "sha256": f"{n:064x}"}


def _grow(fs, root: str, commits: int) -> dict:
    """``commits`` commits as a job makes them: one shard and one index part each, the job's entry updated."""
    state = txlog.read_manifest(fs, root, required=False)
    job = {"job": "job", "started": "t", "finished": None, "parameters": {"source": "s"}, "totals": {}}
    for n in range(commits):
        state["shards"] = state["shards"] + [dict(_entry("shards", n), model_fingerprint=None, job="job")]
        state["index"].append(_entry("index", n))
        job["totals"] = {"new_items": 512 * (n + 1)}  # in place, as the driver does
        state["jobs"] = [j for j in state["jobs"] if j["job"] != "job"] + [job]
        state["totals"] = {"files": 512 * (n + 1), "items": 512 * (n + 1)}
        state = txlog.write_manifest(fs, root, state)
    return state


def test_commit_files_stay_the_same_size_however_large_the_set_grows(tmp_path):
    fs, root = shards.open_dir(str(tmp_path))
    committed = _grow(fs, root, 200)
    files = txlog.log_files(fs, root)
    commits = [f["size"] for f in files.values() if not f["checkpoint"]]
    checkpoints = [f["size"] for f in files.values() if f["checkpoint"]]
    assert len(files) <= 2 * txlog.CHECKPOINT_EVERY and not list(tmp_path.rglob("*.tmp"))
    newest = json.loads((tmp_path / txlog.log_name(200)).read_bytes())
    assert len(newest["shards"]["add"]) == len(newest["index"]["add"]) == len(newest["jobs"]["add"]) == 1
    assert max(commits) < 1500 < min(checkpoints) and max(commits) - min(commits) < 40
    assert txlog.read_manifest(fs, root) == committed
    assert len(committed["shards"]) == 200 and committed["jobs"][0]["totals"] == {"new_items": 512 * 200}


def test_every_commit_size_is_flat_from_the_first_to_the_two_hundredth(tmp_path, monkeypatch):
    monkeypatch.setattr(txlog, "CHECKPOINT_EVERY", 1000)  # keep every commit to compare the first with the last
    fs, root = shards.open_dir(str(tmp_path))
    _grow(fs, root, 200)
    sizes = {g: f["size"] for g, f in txlog.log_files(fs, root).items() if not f["checkpoint"]}
    assert len(sizes) == 199 and abs(sizes[200] - sizes[2]) < 16, (sizes[2], sizes[200])


def test_a_job_entry_changed_in_place_is_committed(tmp_path):
    fs, root = shards.open_dir(str(tmp_path))
    job = {"job": "j", "finished": None}
    txlog.write_manifest(fs, root, dict(txlog.empty_manifest(), jobs=[job]))
    job["finished"] = "now"
    txlog.write_manifest(fs, root, dict(txlog.empty_manifest(), jobs=[job]))
    assert not txlog.log_files(fs, root)[2]["checkpoint"]
    assert txlog.read_manifest(fs, root)["jobs"] == [{"job": "j", "finished": "now"}]


def test_a_shard_entry_changed_in_place_after_reading_is_committed(tmp_path):
    fs, root = shards.open_dir(str(tmp_path))
    _grow(fs, root, 3)
    state = txlog.read_manifest(fs, root)
    state["shards"][1]["sha256"] = "f" * 64
    txlog.write_manifest(fs, root, state)
    assert not txlog.log_files(fs, root)[4]["checkpoint"]
    assert txlog.read_manifest(fs, root)["shards"][1]["sha256"] == "f" * 64


def test_a_writer_that_did_not_see_the_newest_generation_writes_a_checkpoint(tmp_path):
    fs, root = shards.open_dir(str(tmp_path))
    state = _grow(fs, root, 3)
    txlog._last.clear()  # as in another process, or after another process committed
    txlog.write_manifest(fs, root, dict(state, skipped=[{"n": 1}]))
    assert txlog.log_files(fs, root)[4]["checkpoint"] and txlog.read_manifest(fs, root)["skipped"] == [{"n": 1}]


def test_no_manifest_is_empty_only_when_allowed(tmp_path):
    fs, root = shards.open_dir(str(tmp_path))
    assert txlog.read_manifest(fs, root, required=False)["generation"] == 0
    with pytest.raises(shards.ShardDirError, match="no manifest"):
        txlog.read_manifest(fs, root)


@pytest.mark.parametrize("name", [txlog.log_name(1, checkpoint=True), txlog.manifest_name(1)])
def test_a_state_from_a_newer_saepress_is_refused(tmp_path, name):
    (tmp_path / name).parent.mkdir(exist_ok=True)
    (tmp_path / name).write_text(json.dumps({"manifest_version": 99}))
    with pytest.raises(shards.ShardDirError, match="upgrade saepress"):
        txlog.read_manifest(*shards.open_dir(str(tmp_path)))


@pytest.mark.parametrize("damage, message", [
    (lambda m: m.pop("shards"), "missing or malformed: shards"),
    (lambda m: m.update(totals=None), "missing or malformed: totals"),
    (lambda m: m["index"].append({"name": "index/i.parquet"}), "lacks name, rows, bytes, sha256"),
    (lambda m: m["shards"].append({"name": "../../etc/x.parquet", "rows": 1, "bytes": 1, "sha256": "0"}),
     "points outside shards/"),
])
@pytest.mark.parametrize("version", [1, 2])
def test_a_state_missing_what_it_must_hold_is_named(tmp_path, damage, message, version):
    manifest = dict(txlog.empty_manifest(), manifest_version=version, generation=1)
    damage(manifest)
    name = txlog.manifest_name(1) if version == 1 else txlog.log_name(1, checkpoint=True)
    (tmp_path / name).parent.mkdir(exist_ok=True)
    (tmp_path / name).write_text(json.dumps(manifest))
    with pytest.raises(shards.ShardDirError, match=f"incomplete.*{message}"):
        txlog.read_manifest(*shards.open_dir(str(tmp_path)))


@pytest.mark.parametrize("newest", [b"{\"manifest_version\": 2, \"gener", b"", b"[]", b"{\"manifest_version\": 2}",
                                    b'{"manifest_version": 2, "shards": {"keep": 5, "add": []}}'])
def test_an_unreadable_newest_commit_falls_back_to_the_newest_valid_generation(tmp_path, newest):
    fs, root = shards.open_dir(str(tmp_path))
    for n in (1, 2):
        txlog.write_manifest(fs, root, dict(txlog.empty_manifest(), skipped=[{"n": n}]))
    (tmp_path / txlog.log_name(3)).write_bytes(newest)
    with pytest.raises(shards.ShardDirError, match=txlog.log_name(3)):
        txlog.read_manifest(fs, root)  # strict: a writer must not build on a guess
    fallbacks: list[str] = []
    state = txlog.read_manifest(fs, root, fallbacks=fallbacks)
    assert state["skipped"] == [{"n": 2}] and state["generation"] == 2
    assert len(fallbacks) == 1 and txlog.log_name(3) in fallbacks[0] and "generation 2" in fallbacks[0]
    # The next commit starts the log again from a checkpoint of the state it was given.
    txlog.write_manifest(fs, root, dict(state, skipped=[{"n": 4}]))
    assert txlog.log_files(fs, root)[4]["checkpoint"] and txlog.read_manifest(fs, root)["skipped"] == [{"n": 4}]
    for name in (txlog.log_name(1, checkpoint=True), txlog.log_name(2), txlog.log_name(4, checkpoint=True)):
        (tmp_path / name).write_bytes(newest)
    with pytest.raises(shards.ShardDirError, match="no valid manifest"):
        txlog.read_manifest(fs, root, fallbacks=[])


def test_a_damaged_commit_before_the_newest_one_stops_the_state_there(tmp_path):
    fs, root = shards.open_dir(str(tmp_path))
    _grow(fs, root, 5)
    (tmp_path / txlog.log_name(3)).unlink()
    with pytest.raises(shards.ShardDirError, match="generation 3 is missing"):
        txlog.read_manifest(fs, root)
    fallbacks: list[str] = []
    assert len(txlog.read_manifest(fs, root, fallbacks=fallbacks)["shards"]) == 2 and "generation 2" in fallbacks[0]


def test_a_version_1_set_reads_and_its_next_commit_starts_the_log_without_losing_anything(tmp_path):
    shutil.copytree(V1_SET, tmp_path / "set")
    fs, root = shards.open_dir(str(tmp_path / "set"))
    old = txlog.read_manifest(fs, root)
    assert old["manifest_version"] == 1 and not txlog.log_files(fs, root)
    committed = txlog.write_manifest(fs, root, old)
    assert txlog.log_files(fs, root)[old["generation"] + 1]["checkpoint"]
    new = txlog.read_manifest(fs, root)
    assert new == committed and new["manifest_version"] == 2
    assert {k: new[k] for k in ("shards", "index", "skipped", "jobs", "models", "totals")} == \
        {k: old[k] for k in ("shards", "index", "skipped", "jobs", "models", "totals")}
    # The newest version-1 name is the marker: saepress from before the log refuses the set, never empties it.
    marker = json.loads((tmp_path / "set" / txlog.manifest_name(committed["generation"])).read_text())
    assert marker["manifest_version"] == 2
    shutil.rmtree(tmp_path / "set" / txlog.LOG)
    with pytest.raises(shards.ShardDirError, match="log was deleted"):
        txlog.read_manifest(fs, root)

"""Planning on the driver: the catalog read in batches and anti-joined against the stored index, new content
grouped and cut into batches, the accounting that commits update from what each batch adds, and the bounded
submission window that feeds batches to Dask as they complete."""
from __future__ import annotations

import json

import pyarrow as pa
import pytest

from tasks import plan as planning
from tasks import shards, txlog
from tasks.commit import Committer, tally
from tasks.ingest import CATALOG_SCHEMA, write_catalog


def _catalog(*rows, chunk: int = 2):
    """Catalog rows (path, id, status, size) as the Parquet batches planning reads, ``chunk`` rows each."""
    keys = ("path", "id", "status", "size")
    table = pa.Table.from_pylist([dict(zip(keys, row), format=None, reason="why", error=None) for row in rows])
    return table.to_batches(max_chunksize=chunk)


def _index(entries: dict[str, tuple[str, str, str]]) -> pa.Table:
    return pa.Table.from_pylist([{"path": p, "id": i, "shard": s, "kind": k} for p, (i, s, k) in entries.items()],
                                schema=shards.INDEX_SCHEMA)


def _stored(plan: planning.Plan, kind=lambda item: "coded") -> list[dict]:
    """What compress_batch reports for every planned item once stored (the accounting reads id, kind, paths)."""
    return [{**item, "kind": kind(item)} for batch in plan.batches() for item in batch]


@pytest.mark.parametrize("skip_rejected", [False, True])
def test_plan_batches_duplicates_skips_and_accounting(skip_rejected):
    catalog = _catalog(("a", "1", "ok", 10), ("b", "2", "ok", 10), ("c", "1", "duplicate", 10),
                       ("d", "3", "rejected", 10), ("e", "4", "ok", 100), ("f", None, "rejected", 5))
    plan = planning.plan_job(catalog, _index({}), skip_rejected, max_items=2, max_bytes=50)
    assert [len(b) for b in plan.batches()] == ([2, 1] if skip_rejected else [2, 1, 1])
    assert {i["id"]: i["paths"] for i in _stored(plan)}["1"] == ["a", "c"]
    assert {e["path"] for e in plan.skipped} == ({"d", "f"} if skip_rejected else {"f"})
    counts = dict(plan.counts)
    assert counts["files"] == 6 and shards.accounted(counts) == len(plan.skipped)
    tally(counts, _stored(plan, lambda item: "passthrough" if item["status"] == "rejected" else "coded"), [])
    assert shards.accounted(counts) == counts["files"] and counts["duplicate"] == 1


def test_plan_of_a_grown_catalog_adds_only_new_content():
    index = _index({"a": ("1", "s1", "coded"), "b": ("2", "s1", "coded")})
    catalog = _catalog(("a", "1", "ok", 1), ("b", "2", "ok", 1), ("g", "1", "ok", 1), ("h", "9", "ok", 1),
                       ("b2", "2", "ok", 1))
    plan = planning.plan_job(catalog, index, False, 10, 10**6)
    assert [[i["id"] for i in b] for b in plan.batches()] == [["9"]]
    assert {(e["path"], e["shard"]) for e in plan.duplicates.to_pylist()} == {("g", "s1"), ("b2", "s1")}
    assert (plan.counts["coded"], plan.counts["duplicate"]) == (2, 2)


def test_a_path_whose_content_changed_is_stored_again():
    plan = planning.plan_job(_catalog(("a", "new", "ok", 1)), _index({"a": ("old", "s1", "coded")}), False, 10, 100)
    assert [[i["id"] for i in b] for b in plan.batches()] == [["new"]]
    assert plan.counts["coded"] == 0


def test_content_stored_only_under_paths_no_longer_catalogued_counts_once_as_its_kind():
    plan = planning.plan_job(_catalog(("g", "1", "ok", 1), ("h", "1", "duplicate", 1)),
                             _index({"gone": ("1", "s1", "lossless")}), False, 10, 100)
    assert len(plan) == 0 and plan.duplicates["path"].to_pylist() == ["g", "h"]
    assert (plan.counts["lossless"], plan.counts["duplicate"]) == (1, 1)


def test_batches_close_at_the_item_or_byte_limit_and_a_large_file_gets_one_alone():
    sizes = [10, 10, 10, 500, 10, 10, 10, 10]
    plan = planning.plan_job(_catalog(*[(f"p{n}", str(n), "ok", size) for n, size in enumerate(sizes)], chunk=3),
                             _index({}), False, max_items=3, max_bytes=100)
    assert [[i["id"] for i in b] for b in plan.batches()] == [["0", "1", "2"], ["3"], ["4", "5", "6"], ["7"]]
    assert plan.total() == (8, sum(sizes))


def test_the_stored_index_has_one_row_per_path_the_last_part_winning_on_listed_shards_only(tmp_path):
    fs, root = shards.open_dir(str(tmp_path))
    parts = [[("a", "1", "s1"), ("b", "2", "s1"), ("c", "3", "lost")], [("a", "4", "s2")]]
    manifest = {"index": [], "shards": [{"name": "s1"}, {"name": "s2"}]}
    for n, part in enumerate(parts):
        name = f"index/{n}.parquet"
        shards.put_atomic(fs, f"{root}/{name}", shards.index_bytes(
            [{"path": p, "id": i, "shard": s, "kind": "coded"} for p, i, s in part]))
        manifest["index"].append({"name": name})
    index = planning.stored_index(fs, root, manifest)
    assert sorted(zip(index["path"].to_pylist(), index["id"].to_pylist())) == [("a", "4"), ("b", "2")]


def test_a_written_catalog_is_planned_in_batches_from_its_planning_columns(tmp_path, monkeypatch):
    rows = [dict.fromkeys(CATALOG_SCHEMA.names) | {"path": f"p{n}", "id": f"{n % 5}", "size": 1, "animated": False,
                                                    "status": "ok" if n < 5 else "duplicate"} for n in range(12)]
    monkeypatch.setattr(planning, "READ_ROWS", 4)
    catalog, source = planning.open_catalog(write_catalog(str(tmp_path), rows, "/src", 1000))
    batches = list(planning.catalog_batches(catalog))
    plan = planning.plan_job(iter(batches), _index({}), False, 10, 100)
    assert source == "/src" and [b.num_rows for b in batches] == [4, 4, 4]
    assert batches[0].schema.names == planning.CATALOG_COLUMNS
    assert {i["id"]: i["paths"] for i in _stored(plan)}["0"] == ["p0", "p5", "p10"]


def test_a_catalog_ingest_did_not_write_is_a_config_error(tmp_path):
    import pyarrow.parquet as pq

    from tasks.errors import ConfigError

    pq.write_table(pa.table({"id": ["1"]}), tmp_path / planning.CATALOG)
    with pytest.raises(ConfigError, match="not written by `saepress ingest`"):
        planning.open_catalog(str(tmp_path / planning.CATALOG))


def _result(job: str, n: int, items: list[dict]) -> dict:
    """A stored batch as compress_batch reports it (the shard file itself is not needed to commit it)."""
    return {"shard": {"name": f"shards/{job}-{n:05d}.parquet", "rows": len(items), "bytes": 100, "sha256": "0" * 64},
            "items": [{**item, "kind": "coded", "original_bytes": item["size"], "compressed_bytes": 1}
                      for item in items], "skipped": [], "problems": []}


def test_each_commit_writes_only_what_arrived_since_the_last_and_the_totals_add_up(tmp_path):
    # p0 is stored; p30 holds p0's content (a duplicate of stored content); ids 1-9 have two new paths each.
    catalog = _catalog(*[(f"p{n}", str(n % 30), "ok", 1) for n in range(40)], chunk=7)
    index = _index({"p0": ("0", "shards/old.parquet", "coded")})
    manifest = txlog.empty_manifest() | {"shards": [{"name": "shards/old.parquet", "rows": 1, "bytes": 1,
                                                      "sha256": "0" * 64}]}
    plan = planning.plan_job(catalog, index, False, max_items=4, max_bytes=100)
    committer = Committer(str(tmp_path), manifest, {"job": "j"}, {"fingerprint": "f", "uri": "u", "version": 1}, plan)
    done = 2  # p0 and p30
    for n, batch in enumerate(plan.batches()):
        committer.add(_result("j", n, batch))
        counts = committer.commit({"original_bytes": 4, "stored_bytes": 1})
        done += sum(len(item["paths"]) for item in batch)
        assert shards.accounted(counts) == done
    totals = committer.manifest["totals"]
    assert shards.accounted(totals) == totals["files"] == 40 and counts["missing"] == []
    assert (totals["coded"], totals["duplicate"], totals["items"]) == (30, 10, 30)
    assert totals["original_bytes"] == 4 * len(plan)
    index_rows = [entry["rows"] for entry in committer.manifest["index"]]
    assert index_rows[0] == 1 + 8 and all(rows <= 8 for rows in index_rows[1:]) and sum(index_rows) == 39
    assert committer.manifest["generation"] == len(plan) == 8


def _square(x: int) -> int:
    if x == 7:
        raise ValueError("seven")
    return x * x


def test_submission_keeps_a_bounded_window_in_flight_fed_as_calls_complete():
    import distributed

    from tasks.defaults import WINDOW
    from tasks.fanout import submit_and_collect

    pulled = []

    def calls():
        for x in range(40):
            pulled.append(x)
            yield (x,)

    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None):
        results = {}
        for i, result in submit_and_collect(_square, calls(), "test", ((1, 0) for _ in range(40)), errors="return",
                                            retries=0, total=(40, 0)):
            results[i] = result
            assert len(pulled) - len(results) <= max(WINDOW.least, 2 * WINDOW.per_thread)
    assert isinstance(results.pop(7), ValueError) and results == {x: x * x for x in range(40) if x != 7}

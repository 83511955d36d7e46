"""A batch that keeps failing is split until the items that can be stored are; an item that sinks every batch it is
in (a worker killed by it, say) is stored verbatim with the reason; the accounting line holds.

The batch-level failure is injected into compress_batch on an in-process Dask cluster (the real counterpart, a
worker killed mid-job, is tests/test_dask_cluster.py)."""
from __future__ import annotations


import pytest
from fixtures_archives import local_cluster
from hostile import photo

from tasks import compress as units
from tasks import plan, shards, txlog

pytestmark = pytest.mark.slow
REAL_BATCH = units.compress_batch


def poisoned(poison: str, always: bool):
    """compress_batch that fails as a lost worker would whenever ``poison`` is in the batch (``always``: also when
    it is to be stored verbatim, as when the storage itself is down)."""
    def batch(source_url, sharddir, job, n, items, *rest):
        if any(item["paths"][0] == poison and (always or item["status"] != "rejected") for item in items):
            raise MemoryError(f"worker lost while batch {n} held {poison}")
        return REAL_BATCH(source_url, sharddir, job, n, items, *rest)
    return batch


@pytest.mark.parametrize("always", [False, True])
def test_a_poisonous_item_never_keeps_the_rest_of_its_batch_out(tmp_path, monkeypatch, prefect_harness, always):
    from flows.compress import compress_flow

    src = tmp_path / "src"
    src.mkdir()
    for n in range(6):
        photo(n, 40 + n, 32).save(src / f"img{n}.png")
    monkeypatch.setattr(units, "compress_batch", poisoned("img3.png", always))
    with local_cluster(workers=1, processes=False) as address:
        result = compress_flow(source=str(src), out=str(tmp_path / "set"), shard_max_items=6, dask_address=address)
    totals = txlog.read_manifest(*shards.open_dir(str(tmp_path / "set")))["totals"]
    if always:
        assert (totals["coded"], totals["passthrough"]) == (5, 0)
        assert len(result["problems"]) == 2 and "img3.png" in result["problems"][0]  # the batch, the missing file
    else:
        assert result["problems"] == [] and (totals["coded"], totals["passthrough"]) == (5, 1)
        assert totals["coded"] + totals["passthrough"] + totals["skipped"] + totals["duplicate"] == totals["files"]


def test_split_halves_then_stores_a_single_item_verbatim_then_gives_up():
    items = [{"id": str(n), "paths": [f"{n}.png"], "status": "ok", "reason": None} for n in range(5)]
    assert [len(part) for part in plan.split_failed(items, MemoryError())] == [2, 3]
    [[verbatim]] = plan.split_failed(items[:1], MemoryError("worker lost"))
    assert verbatim["status"] == "rejected" and verbatim["reason"].startswith("stored verbatim:")
    assert "MemoryError: worker lost" in verbatim["reason"]
    assert plan.split_failed([verbatim], MemoryError()) == []

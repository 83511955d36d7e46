"""Patch extraction: the dataset reopens with pyarrow, shapes and metadata hold, splits are by image."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fixtures_archives import Case, common_cases, local_cluster, rgb_png, write_folder

from flows.extract import extract_flow
from flows.ingest import ingest_flow
from tasks.errors import ConfigError
from tasks import patches

pytestmark = pytest.mark.usefixtures("prefect_harness")
PER_IMAGE = 16


@pytest.mark.parametrize("fraction,n_val", [(0.0, 0), (0.3, 3), (0.5, 5), (0.01, 1), (0.99, 9)])
def test_split_is_by_image_exact_and_order_free(fraction, n_val):
    ids = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(10)]
    split = patches.assign_splits(ids, fraction, seed=1)
    assert sorted(split) == sorted(ids)
    assert sum(v == "val" for v in split.values()) == n_val
    assert patches.assign_splits(ids[::-1], fraction, seed=1) == split
    if n_val:
        assert patches.assign_splits(ids, fraction, seed=2) != split


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(workers=2) as address:
        yield address


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, cluster):
    """A catalogued folder: the common cases (8 ok at the default size limit) plus a 5x5 image and two more."""
    tmp = tmp_path_factory.mktemp("extract")
    cases = common_cases() + [Case("c/tiny.png", rgb_png(5, 5, 1), "ok"),
                              Case("c/more1.png", rgb_png(33, 21, 2), "ok"),
                              Case("c/more2.png", rgb_png(64, 64, 3), "ok")]
    source = write_folder(tmp / "src", cases)
    ingest_flow(str(source), str(tmp / "work"), dask_address=cluster)
    return tmp / "work"


def _extract(workdir, cluster, batch, monkeypatch, seed=3):
    monkeypatch.setattr(patches, "BATCH_IMAGES", batch)
    result = extract_flow(str(workdir), patches_per_image=PER_IMAGE, val_fraction=0.3, seed=seed,
                          dask_address=cluster)
    return result, pq.read_table(workdir / "patches")


def test_patch_dataset_shapes_metadata_and_split(workdir, cluster, monkeypatch):
    from sae_model import PATCH_SPEC

    result, table = _extract(workdir, cluster, batch=3, monkeypatch=monkeypatch)
    catalog = pq.read_table(workdir / "catalog.parquet").to_pylist()
    ok = {row["id"]: row for row in catalog if row["status"] == "ok"}
    assert len(ok) == 11 and result["parts"] == 4 and result["problems"] == []

    dim = PATCH_SPEC["dim"]
    assert table.schema.field("patch").type == pa.list_(pa.float32(), dim)
    assert table.schema.field("image_id").type == pa.string() and table.schema.field("split").type == pa.string()
    for part in sorted((workdir / "patches").glob("part-*.parquet")):
        meta = pq.read_schema(part).metadata
        assert json.loads(meta[b"saepress.patch_spec"]) == PATCH_SPEC
        assert meta[b"saepress.seed"] == b"3"
        catalog_hash = hashlib.sha256((workdir / "catalog.parquet").read_bytes()).hexdigest()
        assert meta[b"saepress.catalog_sha256"].decode() == catalog_hash
    assert not list((workdir / "patches").glob("*.tmp"))

    values = table.column("patch").combine_chunks().flatten().to_numpy().reshape(-1, dim)
    assert values.dtype == np.float32 and values.shape == (table.num_rows, dim)
    low, high = PATCH_SPEC["value_range"]
    # The codec's float YCbCr transform reaches half a unit past its nominal range (Cb/Cr 255.5).
    assert values.min() >= low - 1 and values.max() <= high + 1 and values.std() > 1

    ids = table.column("image_id").to_pylist()
    counts = {image_id: ids.count(image_id) for image_id in set(ids)}
    tiny = next(image_id for image_id, row in ok.items() if row["path"] == "c/tiny.png")
    assert counts == {image_id: PER_IMAGE for image_id in ok if image_id != tiny}  # 5x5 holds no 8x8 patch
    assert result["empty_images"] == 1 and result["patches"] == table.num_rows == PER_IMAGE * 10

    sides = {}
    for image_id, split in zip(ids, table.column("split").to_pylist()):
        sides.setdefault(image_id, set()).add(split)
    assert all(len(s) == 1 for s in sides.values()), "an image is on both sides of the split"
    assert {next(iter(s)) for s in sides.values()} == {"train", "val"}
    assert result["split_images"] == {"train": 8, "val": 3}


def test_extraction_is_reproducible_whatever_the_batching(workdir, cluster, monkeypatch):
    # Each image draws from its own (seed, id) generator, so batching and worker placement do not matter.
    _, first = _extract(workdir, cluster, batch=3, monkeypatch=monkeypatch)
    result, second = _extract(workdir, cluster, batch=8, monkeypatch=monkeypatch)
    assert result["parts"] == 2 and len(list((workdir / "patches").glob("part-*"))) == 2  # stale parts removed
    assert second.equals(first)
    _, other_seed = _extract(workdir, cluster, batch=8, monkeypatch=monkeypatch, seed=4)
    assert not other_seed.equals(first)


def test_extract_needs_a_catalog(tmp_path):
    with pytest.raises(ConfigError, match="saepress ingest"):
        extract_flow(str(tmp_path))

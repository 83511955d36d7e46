"""Patch extraction: sample codec patches from the catalog's ``ok`` images into Parquet part files.

Each Dask task takes a batch of images, streams them from the source one at a time, and writes one part file
``WORKDIR/patches/part-NNNNN.parquet`` whole (tasks.store: temp name + rename locally, one PUT on an object store,
so the WORKDIR may be an ``s3://`` URL the workers write themselves), so a worker holds one image and one batch
of patches at a time whatever the archive size. Patches of an image are drawn with a generator seeded by
``(seed, image id)``, so the dataset does not depend on batching or on the number of workers.
"""
from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pyarrow as pa
from PIL import Image
from prefect import task

from tasks import store, warned
from tasks.fanout import submit_and_collect
from tasks.sources import SourceError, open_source

PATCH_DIR = "patches"
# Images per task: ~0.5 s of work, ~25 MB of patches at 256 per image, and for a compressed tar one partial
# decompression pass per batch (the pass, not the sampling, dominates small batches).
BATCH_IMAGES = 128


def assign_splits(ids: list[str], val_fraction: float, seed: int) -> dict[str, str]:
    """``train``/``val`` per image id. The images with the smallest hash of (seed, id) go to ``val``.

    The hash ordering does not depend on the order or batching of the catalog, and a grown catalog moves
    few images across; the count is exact (at least one image each side when there are two or more).
    """
    unique = sorted(set(ids), key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).digest())
    n_val = round(len(unique) * val_fraction)
    if len(unique) >= 2 and 0 < val_fraction < 1:
        n_val = min(max(n_val, 1), len(unique) - 1)
    return {image_id: ("val" if rank < n_val else "train") for rank, image_id in enumerate(unique)}


def patch_schema(dim: int, metadata: dict[str, str]) -> pa.Schema:
    return pa.schema([("image_id", pa.string()), ("split", pa.string()),
                      ("patch", pa.list_(pa.float32(), dim))], metadata=metadata)


def patch_metadata(spec: dict, seed: int, catalog_hash: str, patches_per_image: int) -> dict[str, str]:
    return {"saepress.patch_spec": json.dumps(spec, sort_keys=True), "saepress.seed": str(seed),
            "saepress.catalog_sha256": catalog_hash, "saepress.patches_per_image": str(patches_per_image)}


def image_rng(seed: int, image_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, int(image_id[:16], 16)])


def extract_batch(url: str, items: list[tuple[str, str, str]], part: str, patches_per_image: int, seed: int,
                  metadata: dict[str, str], max_pixels: int) -> dict:
    """Sample patches for ``items`` = [(image_id, path, split)] and write ``part``. Runs on a Dask worker.

    Returns counts and one problem line per image that could not be used (changed or unreadable since
    ingest); safe to run twice: the part is replaced whole.
    """
    from sae_model import PATCH_SPEC, sample_patches

    Image.MAX_IMAGE_PIXELS = max_pixels  # the limit ingest checked; see tasks.ingest.probe_batch
    by_path = {path: (image_id, split) for image_id, path, split in items}
    ids, splits, chunks, problems, empty = [], [], [], [], 0
    for path, data in open_source(url).read_many(by_path, errors="return"):
        image_id, split = by_path[path]
        if isinstance(data, SourceError):
            problems.append(f"{path}: {data}")
            continue
        if hashlib.sha256(data).hexdigest() != image_id:
            problems.append(f"{path}: content changed since ingest; run saepress ingest again")
            continue
        try:
            # Not printed: ingest recorded this file's warnings in the catalog.
            with warned.collected(), Image.open(io.BytesIO(data)) as image:
                image.seek(0)  # animated images: the first frame, as catalogued
                patches = sample_patches(image, patches_per_image, image_rng(seed, image_id))
        except Exception as exc:  # one bad image must not lose the batch; it is reported
            problems.append(f"{path}: {type(exc).__name__}: {exc}")
            continue
        empty += len(patches) == 0
        ids += [image_id] * len(patches)
        splits += [split] * len(patches)
        chunks.append(np.asarray(patches, np.float32).reshape(-1, PATCH_SPEC["dim"]))
    flat = np.concatenate(chunks).ravel() if chunks else np.zeros(0, np.float32)
    schema = patch_schema(PATCH_SPEC["dim"], metadata)
    table = pa.table([pa.array(ids, pa.string()), pa.array(splits, pa.string()),
                      pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), PATCH_SPEC["dim"])],
                     schema=schema)
    store.write_table(part, table)
    counts = {s: splits.count(s) for s in ("train", "val")}
    return {"part": store.basename(part), "images": len(items) - len(problems), "patches": len(ids),
            "train": counts["train"], "val": counts["val"], "empty_images": empty, "problems": problems}


@task(name="extract-patches", retries=1, retry_delay_seconds=5)
def extract_patches(url: str, batches: list[list[tuple[str, str, str]]], patch_dir: str, patches_per_image: int,
                    seed: int, metadata: dict[str, str], max_pixels: int) -> list[dict]:
    """Run one Dask task per batch; returns their results in batch order."""
    calls = [(url, batch, store.join(patch_dir, f"part-{index:05d}.parquet"), patches_per_image, seed, metadata,
              max_pixels) for index, batch in enumerate(batches)]
    results: list[dict | None] = [None] * len(batches)
    sizes = [(len(batch), 0) for batch in batches]  # bytes: not in the batches, and not what extract spends time on
    for index, result in submit_and_collect(extract_batch, calls, "extract", sizes):
        results[index] = result
    return results


def remove_stale_parts(patch_dir: str, keep: set[str]) -> int:
    """Delete parts (and temp files of crashed attempts) that this extraction did not write; ``keep`` are names."""
    stale = [name for name in store.list_names(patch_dir)
             if (name.startswith("part-") or name.endswith(".tmp")) and name not in keep]
    for name in stale:
        store.remove(store.join(patch_dir, name))
    return len(stale)

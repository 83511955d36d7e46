"""The training data: an index of WORKDIR/patches and the endless seeded stream of training batches read from it.

The parts are read where they are (tasks.store: a local folder or an ``s3://`` URL): the index reads two small
columns, the stream one row group at a time, so a WORKDIR on an object store is never downloaded whole to a disk.

The patch stream is a pure function of (seed, step): batch ``k`` always holds samples ``[k*B, (k+1)*B)`` of one
endless seeded sequence, so a training resumed from a checkpoint at step ``k`` sees exactly the batches an
uninterrupted one would have seen.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks import store
from tasks.patches import PATCH_DIR


@dataclass(frozen=True)
class Chunk:
    """One row group of one part file, with how many training rows it holds."""

    path: str
    row_group: int
    rows: int


def patch_files(workdir: str) -> list[str]:
    """The part files of ``workdir`` (a location from tasks.store), in name order."""
    folder = store.join(workdir, PATCH_DIR)
    return [store.join(folder, name) for name in store.list_names(folder)
            if name.startswith("part-") and name.endswith(".parquet")]


def describe_patches(workdir: str) -> dict[str, Any]:
    """Index the training rows per row group and collect the dataset's metadata, reading only small columns."""
    files = patch_files(workdir)
    if not files:
        raise FileNotFoundError(f"no part-*.parquet files in {store.join(workdir, PATCH_DIR)}")
    chunks: list[Chunk] = []
    val_ids: set[str] = set()
    file_rows: dict[str, dict[str, Any]] = {}
    meta: dict[str, str] | None = None
    for path in files:
        parquet = store.parquet_file(path)
        if meta is None:
            meta = _file_metadata(parquet)
        elif _file_metadata(parquet) != meta:
            raise ValueError(f"{path} has different saepress metadata than {files[0]}; re-run extract")
        train_rows = 0
        for group in range(parquet.metadata.num_row_groups):
            table = parquet.read_row_group(group, columns=["image_id", "split"])
            is_train = pc.equal(table["split"], "train")
            rows = int(pc.sum(is_train).as_py() or 0)
            val_ids.update(pc.unique(table.filter(pc.invert(is_train))["image_id"]).to_pylist())
            if rows:
                chunks.append(Chunk(path, group, rows))
            train_rows += rows
        file_rows[store.basename(path)] = {"rows": parquet.metadata.num_rows, "train_rows": train_rows,
                                           "bytes": store.size(path), "sha256": store.sha256(path)}
    return {
        "patch_spec": json.loads(meta["saepress.patch_spec"]),
        "patch_metadata": meta,
        "catalog_sha256": meta.get("saepress.catalog_sha256"),
        "data_hash": hashlib.sha256(json.dumps(sorted((n, f["sha256"]) for n, f in file_rows.items())).encode())
        .hexdigest(),
        "files": file_rows,
        "train_rows": sum(c.rows for c in chunks),
        "val_image_ids": sorted(val_ids),
        "chunks": [dataclasses.asdict(c) for c in chunks],
    }


def _file_metadata(parquet: pq.ParquetFile) -> dict[str, str]:
    raw = parquet.schema_arrow.metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items() if k.startswith(b"saepress.")}


class PatchStream:
    """Endless seeded sequence of training patches, read window by window with pyarrow.

    Each epoch permutes the row groups of all part files with ``rng(seed, epoch)``, groups them into windows of about
    ``window_rows`` patches, and permutes each window's rows with ``rng(seed, epoch, window)``: patches from different
    files mix, memory stays at one window, and any position in the sequence can be reached without reading what
    comes before it.
    """

    def __init__(self, chunks: list[dict[str, Any]], dim: int, seed: int, window_rows: int):
        self.chunks = [Chunk(**c) for c in chunks]
        self.total = sum(c.rows for c in self.chunks)
        if not self.total:
            raise ValueError("the patch dataset has no training rows")
        self.dim, self.seed, self.window_rows = dim, seed, window_rows
        self._files: dict[str, pq.ParquetFile] = {}

    def batches(self, batch_size: int, start_step: int = 0) -> Iterator[np.ndarray]:
        """Batch ``k`` (counting from 0) holds samples ``[k*batch_size, (k+1)*batch_size)``."""
        pending: list[np.ndarray] = []
        held = 0
        for block in self._samples(start_step * batch_size):
            pending.append(block)
            held += len(block)
            while held >= batch_size:
                joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
                yield joined[:batch_size]
                pending, held = [joined[batch_size:]], held - batch_size

    def head(self, count: int) -> np.ndarray:
        """The first ``count`` samples of the sequence (fewer if the dataset is smaller)."""
        return next(self.batches(min(count, self.total)))

    def _samples(self, offset: int) -> Iterator[np.ndarray]:
        epoch, skip = divmod(offset, self.total)
        while True:
            for window_index, window in enumerate(self._windows(epoch)):
                rows = sum(c.rows for c in window)
                if skip >= rows:
                    skip -= rows
                    continue
                patches = self._load(window)
                order = np.random.default_rng([self.seed, epoch, window_index]).permutation(len(patches))
                yield patches[order[skip:]]
                skip = 0
            epoch += 1

    def _windows(self, epoch: int) -> Iterator[list[Chunk]]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.chunks))
        window: list[Chunk] = []
        rows = 0
        for index in order:
            window.append(self.chunks[index])
            rows += self.chunks[index].rows
            if rows >= self.window_rows:
                yield window
                window, rows = [], 0
        if window:
            yield window

    def _load(self, window: list[Chunk]) -> np.ndarray:
        parts = []
        for chunk in window:
            parquet = self._files.get(chunk.path) or self._files.setdefault(chunk.path, store.parquet_file(chunk.path))
            table = parquet.read_row_group(chunk.row_group, columns=["split", "patch"])
            column = table.filter(pc.equal(table["split"], "train"))["patch"].combine_chunks()
            parts.append(column.flatten().to_numpy(zero_copy_only=False).reshape(-1, self.dim))
        return np.concatenate(parts).astype(np.float32, copy=False)

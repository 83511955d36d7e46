"""Storing a compress job: Dask workers write the planned batches as shards, and the driver commits the manifest
as batches finish (at most every COMMIT_SECONDS) and at the end, so a crash loses at most the uncommitted batches.

The driver keeps no catalog and no index: batches are made from the plan as the submission window has room
(tasks.fanout), and the accounting is the plan's counts plus what each stored batch added (tally), so a commit
costs the same at the millionth item as at the first.
"""
from __future__ import annotations

import itertools
import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import compress as units
from tasks import shards, txlog, warned
from tasks.fanout import submit_and_collect
from tasks.plan import Plan, split_failed
from tasks.stats import Rates

# Commit at most this often while batches finish: bounds the work a crash loses and the manifests written.
COMMIT_SECONDS = 20.0


class Committer:
    """The driver's view of the shard set while a job runs; each commit() publishes one manifest generation."""

    def __init__(self, out: str, manifest: dict, job: dict, model: dict, plan: Plan):
        self.fs, self.root = shards.open_dir(out)
        self.manifest, self.job = manifest, job
        self.manifest["models"][model["fingerprint"]] = {
            "uri": model["uri"], "version": model["version"], "path": f"models/{model['fingerprint']}"}
        self.counts = dict(plan.counts)
        self.skipped = list(plan.skipped)
        self.missing: list[str] = []  # paths of batches given up on (reported; the next job stores them)
        self.items = sum(entry["rows"] for entry in manifest["shards"])
        self.pending_shards: list[dict] = []
        # The plan's duplicates are index entries of the first commit (the plan's counts include them).
        self.pending_index: list[dict] = plan.duplicates.to_pylist()
        self.pending_kinds: dict[str, dict[str, int]] = {}
        self.commits = 0
        self.last_commit = time.monotonic()

    def add(self, result: dict) -> None:
        """Take one stored batch (tasks.compress.compress_batch's result) into the next commit."""
        # Items a batch could not read are skipped by this job (accounted, retried by the next one).
        self.skipped += result["skipped"]
        tally(self.counts, result["items"], result["skipped"])
        if result["shard"] is None:
            return
        self.pending_shards.append(result["shard"])
        self.items += result["shard"]["rows"]
        add_kinds(self.pending_kinds, result["items"])
        for item in result["items"]:
            self.pending_index += [{"path": path, "id": item["id"], "shard": result["shard"]["name"],
                                    "kind": item["kind"]} for path in item["paths"]]

    def give_up(self, items: list[dict]) -> None:
        """Items this job could not store: they stay unaccounted (missing), and the next job stores them."""
        self.missing += [path for item in items for path in item["paths"]]

    def due(self) -> bool:
        return time.monotonic() - self.last_commit >= COMMIT_SECONDS

    def commit(self, totals: dict) -> dict:
        """Write the pending index part, then the manifest that makes it and the pending shards visible; return the
        catalog's accounting (tasks.plan.Plan.counts as of this commit, and the paths still ``missing``)."""
        manifest = self.manifest
        if self.pending_index:
            name = f"index/{self.job['job']}-{self.commits:04d}.parquet"
            data = shards.index_bytes(self.pending_index)
            shards.put_atomic(self.fs, f"{self.root}/{name}", data)
            manifest["index"].append({"name": name, "rows": len(self.pending_index), "bytes": len(data),
                                      "sha256": shards.sha256_hex(data)})
        manifest["shards"] += self.pending_shards
        manifest["skipped"] = self.skipped
        kinds = {kind: dict(entry) for kind, entry in manifest["totals"].get("kinds", {}).items()}
        for kind, entry in self.pending_kinds.items():
            for key, value in entry.items():
                kinds.setdefault(kind, dict.fromkeys(entry, 0))[key] += value
        manifest["totals"] = {**self.counts, "kinds": kinds, "items": self.items,
                              "original_bytes": manifest["totals"].get("original_bytes", 0) + totals["original_bytes"],
                              "stored_bytes": manifest["totals"].get("stored_bytes", 0) + totals["stored_bytes"]}
        manifest["jobs"] = [j for j in manifest["jobs"] if j["job"] != self.job["job"]] + [self.job]
        committed = txlog.write_manifest(self.fs, self.root, manifest)
        # Byte totals accumulate per commit, so the next commit adds only what arrived after this one.
        totals["original_bytes"] = totals["stored_bytes"] = 0
        self.manifest = committed
        self.pending_shards, self.pending_index, self.pending_kinds = [], [], {}
        self.commits += 1
        self.last_commit = time.monotonic()
        return {**self.counts, "missing": list(self.missing)}


def tally(counts: dict[str, int], items: list[dict], skipped: list[dict]) -> None:
    """Add one stored batch to the catalog's accounting: each new item's first path counts as its kind, its other
    paths as duplicates, and each path it could not read as skipped (planning stores only content no catalogued
    path holds yet, so every item is new)."""
    for item in items:
        counts[item["kind"]] += 1
        counts["duplicate"] += len(item["paths"]) - 1
    counts["skipped"] += len(skipped)


def add_kinds(kinds: dict[str, dict[str, int]], items: list[dict]) -> None:
    """Count stored items and their bytes per kind: {kind: {items, original_bytes, stored_bytes}}."""
    for item in items:
        entry = kinds.setdefault(item["kind"], {"items": 0, "original_bytes": 0, "stored_bytes": 0})
        entry["items"] += 1
        entry["original_bytes"] += item["original_bytes"]
        entry["stored_bytes"] += item["compressed_bytes"]


@task(cache_policy=NO_CACHE)
def store_batches(source_url: str, out: str, committer: Committer, plan: Plan, model: dict, rate: dict[str, float],
                  fidelity: str) -> dict:
    """Compress every planned batch on Dask, committing as they finish; return this job's statistics."""
    job = committer.job["job"]
    numbers = itertools.count(len(plan))  # shard names of split batches never repeat a number
    pending, total = enumerate(plan.batches()), plan.total()
    stats = {"new_items": 0, "original_bytes": 0, "stored_bytes": 0, "rates": Rates(), "warned_files": 0,
             "kinds": {}}
    uncommitted = {"original_bytes": 0, "stored_bytes": 0}
    problems: list[str] = []
    while True:  # a round per split level; almost every job needs one
        held: dict[int, tuple[int, list[dict]]] = {}  # the batches in flight, by call
        batches, sized, named = itertools.tee(pending, 3)  # read in step: tee holds at most one batch

        def calls():
            for i, (n, items) in enumerate(batches):
                held[i] = n, items
                yield source_url, out, job, n, items, model["fingerprint"], model["uri"], rate, fidelity

        sizes = ((len(items), sum(item["size"] for item in items)) for _, items in sized)
        keys = (f"compress-{job}-{n}" for n, _ in named)
        failed = []
        for i, result in submit_and_collect(units.compress_batch, calls(), "compress", sizes, keys=keys,
                                            errors="return", total=total):
            n, items = held.pop(i)
            if isinstance(result, shards.DiskFull):  # splitting cannot help: say it once
                full = f"{result}: free space and run compress again (what is committed stays)"
                problems += [] if full in problems else [full]
                committer.give_up(items)
                continue
            if isinstance(result, Exception):  # failed every retry: split, so one poisonous item cannot sink the rest
                failed.append((n, items, result))
                continue
            problems += result["problems"]
            committer.add(result)
            add_kinds(stats["kinds"], result["items"])
            for item in result["items"]:
                stats["new_items"] += 1
                if item["warnings"]:
                    stats["warned_files"] += 1
                    warned.log(item["paths"][0], item["warnings"])
                for key in ("original_bytes", "stored_bytes"):
                    value = item["original_bytes" if key == "original_bytes" else "compressed_bytes"]
                    stats[key] += value
                    uncommitted[key] += value
                stats["rates"].add(item)
            if committer.due():
                committer.commit(uncommitted)
        retry = []
        for n, items, error in failed:
            parts = split_failed(items, error)
            if not parts:
                names = [item["paths"][0] for item in items]
                problems.append(f"{', '.join(names[:5])}: not stored, batch compress-{job}-{n} failed every attempt "
                                f"({type(error).__name__}: {error}); run compress again")
                committer.give_up(items)
            retry += [(next(numbers), part) for part in parts]
        if not retry:
            break
        pending = iter(retry)
        total = (sum(len(part) for _, part in retry), sum(item["size"] for _, part in retry for item in part))
    stats["counts"] = committer.commit(uncommitted)
    stats["problems"] = problems
    return stats


def job_metrics(stats: dict, seconds: float) -> dict:
    """The job's totals as recorded in the manifest and the lineage run (rates: tasks.stats.Rates)."""
    rates = stats["rates"].summary()
    return {"new_items": stats["new_items"], "new_coded": rates["coded"],
            "original_bytes": stats["original_bytes"], "compressed_bytes": stats["stored_bytes"],
            "ratio": stats["original_bytes"] / stats["stored_bytes"] if stats["stored_bytes"] else 0.0,
            "bpp": rates["bpp"], "median_bpp": rates["median_bpp"], "median_psnr": rates["median_psnr"],
            "seconds": seconds,
            "images_per_s": stats["new_items"] / seconds if seconds else 0.0, "warned_files": stats["warned_files"],
            "kinds": stats["kinds"],
            **{k: v for k, v in stats["counts"].items() if k != "missing"}}

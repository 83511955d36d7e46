"""`saepress compress` and `saepress decompress`: an archive into a self-contained shard set, and back.

Compress: lock SHARDDIR -> catalog (ingest, or an existing WORKDIR's) -> plan shard-sized batches of what is not
stored yet, from the catalog read in Parquet batches (tasks.plan) -> resolve the model once and copy it into
SHARDDIR/models/<fingerprint>/ -> Dask workers write shards, a bounded window at a time -> the driver commits the
manifest as batches finish and at the end (tasks.commit) -> MLflow lineage run.
A crash loses at most the uncommitted batches; the next run skips everything committed and deletes the leftovers.
"""
from __future__ import annotations

import errno
import time
import uuid
from typing import Any

from prefect import flow

from flows.cluster import dask_client
from flows.settings import Settings
from tasks import defaults, plan, shards, txlog, warned
from tasks.access import open_shard_set
from tasks.commit import Committer, job_metrics, store_batches
from tasks.errors import ConfigError
from tasks.exact import check_fidelity
from tasks.lineage import log_lineage
from tasks.model import resolve_model
from tasks.report import write_task as write_report
from tasks.restore import restore_files


def _rate(quality: float | None, target_bpp: float | None, target_psnr: float | None) -> dict[str, float]:
    given = {k: v for k, v in {"quality": quality, "target_bpp": target_bpp, "target_psnr": target_psnr}.items()
             if v is not None}
    if len(given) > 1:
        raise ConfigError(f"give one of --quality, --target-bpp, --target-psnr, not {sorted(given)}")
    return {k: float(v) for k, v in given.items()} or {"quality": defaults.QUALITY}


@flow(name="saepress-compress")
def compress_flow(source: str, out: str, model: str | None = None, quality: float | None = None,
                  target_bpp: float | None = None, target_psnr: float | None = None, skip_rejected: bool = False,
                  shard_max_items: int = defaults.SHARDS.max_items, shard_max_bytes: int = defaults.SHARDS.max_bytes,
                  dask_address: str | None = None, fidelity: str = defaults.FIDELITY) -> dict[str, Any]:
    settings = Settings.resolve(dask_address=dask_address).prepare()
    rate = _rate(quality, target_bpp, target_psnr)
    try:
        fidelity = check_fidelity(fidelity)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if shard_max_items < 1 or shard_max_bytes < 1:
        raise ConfigError("shard limits must be positive")
    started, job_id = time.time(), time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    parameters = {"source": source, "out": out, "model": model, **rate, "fidelity": fidelity,
                  "skip_rejected": skip_rejected,
                  "shard_max_items": shard_max_items, "shard_max_bytes": shard_max_bytes}
    try:
        with shards.lock(out, job_id):
            committer, stats, resolved, metrics = _compress_locked(settings, source, out, model, rate, skip_rejected,
                                                                   shard_max_items, shard_max_bytes, dask_address,
                                                                   job_id, parameters, started)
    except (shards.LockedError, shards.ShardDirError) as exc:
        raise ConfigError(str(exc)) from None
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        # Every write is atomic: the last commit stands, no half file is left, and the rerun resumes from it.
        return {"report": [f"compress {source} -> {out} (job {job_id}): stopped, disk full"],
                "problems": [f"disk full at {exc.filename or out}: free space and run compress again "
                             "(what was committed stays; the rerun resumes)"], "job": job_id}
    counts = stats["counts"]
    elapsed = metrics["seconds"]
    problems = list(stats["problems"])
    accounted = shards.accounted(counts)
    if accounted != counts["files"]:
        problems.append(f"{counts['files'] - accounted} catalogued file(s) not stored, e.g. {counts['missing'][:5]}; "
                        "run compress again")
    report = [
        f"compress {source} -> {out} (job {job_id})",
        f"model: {resolved['uri']} (fingerprint {resolved['fingerprint'][:12]})",
        f"this job: {metrics['new_items']} new item(s), {_mb(metrics['original_bytes'])} -> "
        f"{_mb(metrics['compressed_bytes'])} (ratio {metrics['ratio']:.2f}), {elapsed:.1f} s, "
        f"{metrics['images_per_s']:.1f} images/s",
        f"coded by this job: {metrics['new_coded']} image(s) at {metrics['bpp']:.3f} bpp (all coded bits / all coded "
        f"pixels); median image {metrics['median_bpp']:.3f} bpp, {metrics['median_psnr']:.2f} dB PSNR",
        f"catalog: {counts['files']} files = "
        + " + ".join(f"{counts[kind]} {kind}" for kind in shards.shown_kinds(counts))
        + f" + {counts['skipped']} skipped + {counts['duplicate']} duplicate"
        + ("" if accounted == counts["files"] else f" + {counts['files'] - accounted} MISSING"),
    ]
    report += [f"{kind}: {entry['items']} item(s) this job, {_mb(entry['original_bytes'])} -> "
               f"{_mb(entry['stored_bytes'])}, saved {_saved(entry)}"
               for kind, entry in sorted(metrics["kinds"].items())]
    report += [f"skipped: {e['path']} ({e['reason']})" for e in committer.manifest["skipped"]]
    report += warned.summary(metrics["warned_files"], "listed in each one's row (conversions) and in the log")
    if stats["report_url"]:
        report.append(f"report: {stats['report_url']}")
    return {"report": report, "problems": problems, "job": job_id, "totals": metrics, "model": resolved,
            "manifest_generation": committer.manifest["generation"]}


def _compress_locked(settings, source, out, model, rate, skip_rejected, shard_max_items, shard_max_bytes,
                     dask_address, job_id, parameters, started):
    """The part of a compress job that must hold SHARDDIR's lock: everything that reads or writes it."""
    fs, root = shards.open_dir(out)
    problems: list[str] = []
    manifest = txlog.read_manifest(fs, root, required=False, fallbacks=problems)
    # Leftovers go first: on a full disk they are the space this job needs. A job that had to pass over an
    # unreadable manifest deletes nothing (its files may be all that is left of what that generation stored).
    collect = not problems
    if collect:
        txlog.collect_garbage(fs, root, manifest)
    catalog_url = plan.find_catalog(source)
    if catalog_url is None:
        from flows.ingest import ingest_flow

        # A damaged or empty archive is this job's problem too, not only the catalog's.
        problems += ingest_flow(source=source, out=out, dask_address=dask_address)["source_problems"]
        catalog_url = f"{out.rstrip('/')}/{plan.CATALOG}"
    manifest, lost = plan.drop_lost(fs, root, manifest)
    problems += lost
    catalog, source_url = plan.open_catalog(catalog_url)
    job_plan = plan.plan_job(plan.catalog_batches(catalog), plan.stored_index(fs, root, manifest), skip_rejected,
                             shard_max_items, shard_max_bytes)
    resolved = resolve_model(model, settings.model_name, out)
    job = {"job": job_id, "started": shards.now(), "finished": None, "parameters": parameters,
           "model_fingerprint": resolved["fingerprint"]}
    committer = Committer(out, manifest, job, resolved, job_plan)
    with dask_client(settings):
        stats = store_batches(source_url, out, committer, job_plan, resolved, rate, parameters["fidelity"])
    stats["problems"] = problems + stats["problems"]
    job["finished"] = shards.now()
    metrics = job_metrics(stats, time.time() - started)
    job["totals"] = metrics
    report_url = None
    try:
        report_url = write_report(out, source_url)
    except Exception as exc:  # the shard set is committed and complete; the page is reported, not fatal
        stats["problems"].append(f"report not written ({type(exc).__name__}: {exc}); run `saepress report {out}`")
    try:
        job["mlflow_run_id"] = log_lineage(settings.mlflow_artifact_root, out, resolved, parameters, metrics, job_id,
                                           report_url)
    except Exception as exc:  # the shard set is committed and complete; lineage is reported, not fatal
        stats["problems"].append(f"MLflow lineage run not logged ({type(exc).__name__}: {exc})")
    # The last generation records the finished job (totals, lineage run id).
    committer.commit({"original_bytes": 0, "stored_bytes": 0})
    try:  # the job's index parts become two sorted files: get and the next job read O(1) index files
        committer.manifest = txlog.commit_compacted(fs, root, committer.manifest)
    except OSError as exc:  # the job is committed; an index left in parts is slower to read, not wrong
        stats["problems"].append(f"index not compacted ({exc}); run `saepress compact {out}`")
    if collect:
        txlog.collect_garbage(fs, root, committer.manifest)
    stats["report_url"] = report_url
    return committer, stats, resolved, metrics


def _mb(size: int) -> str:
    return f"{size / 2**20:.2f} MB"


def _saved(entry: dict) -> str:
    original = entry["original_bytes"]
    return f"{100 * (original - entry['stored_bytes']) / original:.1f}%" if original else "nothing"


@flow(name="saepress-decompress")
def decompress_flow(sharddir: str, out: str, dask_address: str | None = None,
                    max_pixels: int = defaults.INGEST.max_pixels) -> dict[str, Any]:
    """Write every stored file back under ``out`` at each of its original paths (coded images as PNG); coded
    images whose header declares more than ``max_pixels`` are refused and listed as problems."""
    settings = Settings.resolve(dask_address=dask_address).prepare()
    started = time.time()
    fallbacks: list[str] = []
    fs, root, manifest = open_shard_set(sharddir, fallbacks)
    targets, files, problems = plan.plan_decompress(shards.read_index(fs, root, manifest))
    problems = fallbacks + problems
    with dask_client(settings):
        restored = restore_files(sharddir, manifest, targets, out, max_pixels)
    written, size = restored["written"], restored["bytes"]
    problems += restored["problems"]
    elapsed = time.time() - started
    report = [f"decompress {sharddir} -> {out}: {written} of {files} file(s), {_mb(size)}, {elapsed:.1f} s, "
              f"{written / elapsed if elapsed else 0:.1f} files/s"]
    return {"report": report, "problems": problems, "written": written, "bytes": size}

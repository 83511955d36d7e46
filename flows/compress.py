"""`saepress compress` and `saepress decompress`: an archive into a self-contained shard set, and back.

Compress: lock SHARDDIR -> catalog (ingest, or an existing WORKDIR's) -> resolve the model once and copy it into
SHARDDIR/models/<fingerprint>/ -> plan shard-sized batches of what is not stored yet -> Dask workers write shards
-> the driver commits the manifest as batches finish (every COMMIT_SECONDS) and at the end -> MLflow lineage run.
A crash loses at most the uncommitted batches; the next run skips everything committed and deletes the leftovers.
"""
from __future__ import annotations

import json
import tempfile
import time
import uuid
from typing import Any

import fsspec
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.cluster import dask_client
from flows.progress import progress
from flows.settings import ConfigError, Settings
from tasks import compress as units
from tasks import shards

# Commit at most this often while batches finish: bounds the work a crash loses and the manifests written.
COMMIT_SECONDS = 20.0
DEFAULT_QUALITY = 50.0
CATALOG = "catalog.parquet"
# Written by decompress beside the files when a name had to be shortened: {original path: name written}.
RENAMED = "saepress-renamed.json"


def _rate(quality: float | None, target_bpp: float | None, target_psnr: float | None) -> dict[str, float]:
    given = {k: v for k, v in {"quality": quality, "target_bpp": target_bpp, "target_psnr": target_psnr}.items()
             if v is not None}
    if len(given) > 1:
        raise ConfigError(f"give one of --quality, --target-bpp, --target-psnr, not {sorted(given)}")
    return {k: float(v) for k, v in given.items()} or {"quality": DEFAULT_QUALITY}


def _existing_catalog(source: str) -> str | None:
    """The catalog URL when ``source`` is a WORKDIR (or its catalog file) rather than an archive to ingest."""
    if any(ch in source for ch in "*?["):
        return None
    fs, path = fsspec.core.url_to_fs(source)
    if path.endswith(CATALOG) and fs.isfile(path):
        return source
    if fs.isdir(path) and fs.isfile(f"{path.rstrip('/')}/{CATALOG}"):
        return f"{source.rstrip('/')}/{CATALOG}"
    return None


@task(retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def read_catalog(url: str) -> tuple[list[dict], str]:
    """Catalog rows (the columns planning needs) and the source URL ingest recorded."""
    fs, path = fsspec.core.url_to_fs(url)
    table = shards.read_shard(fs, path, columns=["id", "path", "size", "status", "format", "error", "reason"])
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if "saepress.source" not in meta:
        raise ConfigError(f"{url} has no saepress.source metadata: it was not written by `saepress ingest`")
    return table.to_pylist(), meta["saepress.source"]


@task(retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def resolve_model(model: str | None, model_name: str, out: str) -> dict[str, Any]:
    """Pick the model once, record exactly which one, and copy it into SHARDDIR/models/<fingerprint>/."""
    from sae_model import Codec, CodecError

    uri, version, run_id = model, None, None
    if model is None or model.startswith("models:/"):
        uri, version, run_id = _registry_version(model or f"models:/{model_name}@champion")
    try:
        codec = Codec.load(uri) if uri else Codec.pretrained()
    except (CodecError, OSError) as exc:
        raise ConfigError(f"cannot load model {uri}: {exc}") from None
    fingerprint = codec.fingerprint
    fs, root = shards.open_dir(units.model_dir(out, fingerprint))
    if not fs.isfile(f"{root}/config.json"):
        # Save locally, then upload: Codec.save writes to a directory on this machine.
        with tempfile.TemporaryDirectory(prefix="saepress-model-") as tmp:
            codec.save(tmp)
            fs.makedirs(root, exist_ok=True)
            fs.put(f"{tmp}/", f"{root}/", recursive=True)
    # Prove the copy decodes as this model before any shard depends on it.
    units._CODECS.pop(units.model_dir(out, fingerprint), None)
    try:
        units.load_codec(out, fingerprint)
    except units.ItemError as exc:
        raise ConfigError(f"{exc}; delete {units.model_dir(out, fingerprint)} and run again") from None
    return {"uri": uri or "sae_model:pretrained", "version": version, "run_id": run_id, "fingerprint": fingerprint}


def _registry_version(uri: str) -> tuple[str | None, str | None, str | None]:
    """``models:/name@alias`` or ``models:/name/N`` -> (``models:/name/N``, N, training run id).

    Without a champion (no such model or alias) the default is the pretrained model: (None, None, None).
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    name, _, ref = uri[len("models:/"):].partition("@")
    client = MlflowClient()
    try:
        if ref:
            found = client.get_model_version_by_alias(name, ref)
        else:
            name, _, number = name.partition("/")
            found = client.get_model_version(name, number)
    except MlflowException as exc:
        if uri.endswith("@champion") and exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None, None, None
        raise ConfigError(f"cannot resolve {uri} in MLflow ({exc.message})") from None
    return f"models:/{name}/{found.version}", str(found.version), found.run_id


class Committer:
    """The driver's view of the shard set while a job runs; each commit() publishes one manifest generation."""

    def __init__(self, out: str, manifest: dict, job: dict, model: dict, catalog: list[dict], plan: dict):
        self.fs, self.root = shards.open_dir(out)
        self.manifest, self.job, self.catalog, self.plan = manifest, job, catalog, plan
        self.index = shards.read_index(self.fs, self.root, manifest)
        self.manifest["models"][model["fingerprint"]] = {
            "uri": model["uri"], "version": model["version"], "path": f"models/{model['fingerprint']}"}
        self.pending_shards: list[dict] = []
        self.pending_index: list[dict] = list(plan["duplicates"])
        self.commits = 0
        self.last_commit = time.monotonic()

    def add(self, result: dict) -> None:
        if result["shard"] is None:
            return
        self.pending_shards.append(result["shard"])
        for item in result["items"]:
            self.pending_index += [{"path": path, "id": item["id"], "shard": result["shard"]["name"],
                                    "kind": item["kind"]} for path in item["paths"]]

    def due(self) -> bool:
        return time.monotonic() - self.last_commit >= COMMIT_SECONDS

    def commit(self, totals: dict) -> dict:
        """Write the pending index part, then the manifest that makes it and the pending shards visible."""
        manifest = self.manifest
        if self.pending_index:
            name = f"index/{self.job['job']}-{self.commits:04d}.parquet"
            data = shards.index_bytes(self.pending_index)
            shards.put_atomic(self.fs, f"{self.root}/{name}", data)
            manifest["index"].append({"name": name, "rows": len(self.pending_index), "bytes": len(data),
                                      "sha256": shards.sha256_hex(data)})
            self.index.update({e["path"]: (e["id"], e["shard"], e["kind"]) for e in self.pending_index})
        manifest["shards"] += self.pending_shards
        manifest["skipped"] = self.plan["skipped"]
        counts = units.account(self.catalog, self.index, self.plan["skipped"])
        manifest["totals"] = {**{k: v for k, v in counts.items() if k != "missing"},
                              "items": sum(s["rows"] for s in manifest["shards"]),
                              "original_bytes": manifest["totals"].get("original_bytes", 0) + totals["original_bytes"],
                              "stored_bytes": manifest["totals"].get("stored_bytes", 0) + totals["stored_bytes"]}
        manifest["jobs"] = [j for j in manifest["jobs"] if j["job"] != self.job["job"]] + [self.job]
        committed = shards.write_manifest(self.fs, self.root, manifest)
        # Byte totals accumulate per commit, so the next commit adds only what arrived after this one.
        totals["original_bytes"] = totals["stored_bytes"] = 0
        self.manifest = committed
        self.pending_shards, self.pending_index = [], []
        self.commits += 1
        self.last_commit = time.monotonic()
        return counts


@task(cache_policy=NO_CACHE)
def store_batches(source_url: str, out: str, committer: Committer, model: dict, rate: dict[str, float]) -> dict:
    """Compress every planned batch on Dask, committing as they finish; return this job's statistics."""
    import distributed

    client = distributed.get_client()
    job = committer.job["job"]
    futures = [client.submit(units.compress_batch, source_url, out, job, n, items, model["fingerprint"],
                             model["uri"], rate, key=f"compress-{job}-{n}", retries=2, pure=False)
               for n, items in enumerate(committer.plan["batches"])]
    stats = {"new_items": 0, "coded": 0, "original_bytes": 0, "stored_bytes": 0, "bpp": [], "psnr": []}
    uncommitted = {"original_bytes": 0, "stored_bytes": 0}
    problems: list[str] = []
    for future in progress(distributed.as_completed(futures), total=len(futures), description="compress"):
        try:
            result = future.result()
        except Exception as exc:  # a batch that failed every retry: its items stay unstored, reported as missing
            problems.append(f"batch {future.key} failed ({type(exc).__name__}: {exc}); run compress again")
            continue
        problems += result["problems"]
        committer.add(result)
        for item in result["items"]:
            stats["new_items"] += 1
            for key in ("original_bytes", "stored_bytes"):
                value = item["original_bytes" if key == "original_bytes" else "compressed_bytes"]
                stats[key] += value
                uncommitted[key] += value
            if item["kind"] == "coded":
                stats["coded"] += 1
                stats["bpp"].append(item["bpp"])
                stats["psnr"].append(item["psnr"])
        if committer.due():
            committer.commit(uncommitted)
    stats["counts"] = committer.commit(uncommitted)
    stats["problems"] = problems
    return stats


@task(retries=1, retry_delay_seconds=2, cache_policy=NO_CACHE)
def log_lineage(settings: Settings, out: str, model: dict, parameters: dict, metrics: dict, job: str) -> str:
    """An MLflow run in experiment ``saepress-compress`` tying the shard set to the model version."""
    import mlflow

    from tasks.training import experiment_id

    mlflow.set_experiment(experiment_id=experiment_id(f"{settings.mlflow_artifact_root}/compress", "saepress-compress"))
    tags = {"saepress.shard_dir": out, "saepress.job": job, "saepress.model_uri": model["uri"],
            "saepress.model_fingerprint": model["fingerprint"], "saepress.model_version": model["version"] or "",
            "saepress.model_run_id": model["run_id"] or ""}
    with mlflow.start_run(run_name=f"compress {job}", tags=tags) as run:
        mlflow.log_params({k: v for k, v in parameters.items() if v is not None})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})
    return run.info.run_id


@flow(name="saepress-compress")
def compress_flow(source: str, out: str, model: str | None = None, quality: float | None = None,
                  target_bpp: float | None = None, target_psnr: float | None = None, skip_rejected: bool = False,
                  shard_max_items: int = 512, shard_max_bytes: int = 128 * 2**20,
                  dask_address: str | None = None) -> dict[str, Any]:
    settings = Settings.resolve(dask_address=dask_address).prepare()
    rate = _rate(quality, target_bpp, target_psnr)
    if shard_max_items < 1 or shard_max_bytes < 1:
        raise ConfigError("shard limits must be positive")
    started, job_id = time.time(), time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    parameters = {"source": source, "out": out, "model": model, **rate, "skip_rejected": skip_rejected,
                  "shard_max_items": shard_max_items, "shard_max_bytes": shard_max_bytes}
    try:
        with shards.lock(out, job_id):
            committer, stats, resolved, metrics = _compress_locked(settings, source, out, model, rate, skip_rejected,
                                                                   shard_max_items, shard_max_bytes, dask_address,
                                                                   job_id, parameters, started)
    except shards.LockedError as exc:
        raise ConfigError(str(exc)) from None
    counts = stats["counts"]
    elapsed = metrics["seconds"]
    problems = list(stats["problems"])
    accounted = counts["coded"] + counts["passthrough"] + counts["skipped"] + counts["duplicate"]
    if accounted != counts["files"]:
        problems.append(f"{counts['files'] - accounted} catalogued file(s) not stored, e.g. {counts['missing'][:5]}; "
                        "run compress again")
    report = [
        f"compress {source} -> {out} (job {job_id})",
        f"model: {resolved['uri']} (fingerprint {resolved['fingerprint'][:12]})",
        f"this job: {metrics['new_items']} new item(s), {_mb(metrics['original_bytes'])} -> "
        f"{_mb(metrics['compressed_bytes'])} (ratio {metrics['ratio']:.2f}), mean {metrics['mean_bpp']:.3f} bpp, "
        f"mean PSNR {metrics['mean_psnr']:.2f} dB, {elapsed:.1f} s, {metrics['images_per_s']:.1f} images/s",
        f"catalog: {counts['files']} files = {counts['coded']} coded + {counts['passthrough']} passthrough + "
        f"{counts['skipped']} skipped + {counts['duplicate']} duplicate"
        + ("" if accounted == counts["files"] else f" + {counts['files'] - accounted} MISSING"),
    ]
    report += [f"skipped: {e['path']} ({e['reason']})" for e in committer.manifest["skipped"]]
    return {"report": report, "problems": problems, "job": job_id, "totals": metrics,
            "manifest_generation": committer.manifest["generation"]}


def _compress_locked(settings, source, out, model, rate, skip_rejected, shard_max_items, shard_max_bytes,
                     dask_address, job_id, parameters, started):
    """The part of a compress job that must hold SHARDDIR's lock: everything that reads or writes it."""
    catalog_url = _existing_catalog(source)
    if catalog_url is None:
        from flows.ingest import ingest_flow

        if "://" in out and not out.startswith("file://"):
            raise ConfigError(f"ingest writes its catalog on local disk: run `saepress ingest {source} --out WORKDIR` "
                              f"and then `saepress compress WORKDIR --out {out}`")
        ingest_flow(source=source, out=out, dask_address=dask_address)
        catalog_url = f"{out.rstrip('/')}/{CATALOG}"
    catalog, source_url = read_catalog(catalog_url)
    resolved = resolve_model(model, settings.model_name, out)
    fs, root = shards.open_dir(out)
    manifest = shards.read_manifest(fs, root, required=False)
    shards.collect_garbage(fs, root, manifest)
    plan = units.plan_job(catalog, shards.read_index(fs, root, manifest), skip_rejected, shard_max_items,
                          shard_max_bytes)
    job = {"job": job_id, "started": shards.now(), "finished": None, "parameters": parameters,
           "model_fingerprint": resolved["fingerprint"]}
    committer = Committer(out, manifest, job, resolved, catalog, plan)
    with dask_client(settings):
        stats = store_batches(source_url, out, committer, resolved, rate)
    job["finished"] = shards.now()
    counts = stats["counts"]
    elapsed = time.time() - started
    metrics = {"new_items": stats["new_items"], "coded": stats["coded"],
               "original_bytes": stats["original_bytes"], "compressed_bytes": stats["stored_bytes"],
               "ratio": stats["original_bytes"] / stats["stored_bytes"] if stats["stored_bytes"] else 0.0,
               "mean_bpp": sum(stats["bpp"]) / len(stats["bpp"]) if stats["bpp"] else 0.0,
               "mean_psnr": _finite_mean(stats["psnr"]), "seconds": elapsed,
               "images_per_s": stats["new_items"] / elapsed if elapsed else 0.0,
               **{k: v for k, v in counts.items() if k != "missing"}}
    job["totals"] = metrics
    try:
        job["mlflow_run_id"] = log_lineage(settings, out, resolved, parameters, metrics, job_id)
    except Exception as exc:  # the shard set is committed and complete; lineage is reported, not fatal
        stats["problems"].append(f"MLflow lineage run not logged ({type(exc).__name__}: {exc})")
    # The last generation records the finished job (totals, lineage run id).
    committer.commit({"original_bytes": 0, "stored_bytes": 0})
    shards.collect_garbage(fs, root, committer.manifest)
    return committer, stats, resolved, metrics


def _finite_mean(values: list[float]) -> float:
    finite = [v for v in values if v == v and abs(v) != float("inf")]
    return sum(finite) / len(finite) if finite else 0.0


def _mb(size: int) -> str:
    return f"{size / 2**20:.2f} MB"


@flow(name="saepress-decompress")
def decompress_flow(sharddir: str, out: str, dask_address: str | None = None) -> dict[str, Any]:
    """Write every stored file back under ``out`` at each of its original paths (coded images as PNG)."""
    import distributed

    settings = Settings.resolve(dask_address=dask_address).prepare()
    started = time.time()
    fs, root = shards.open_dir(sharddir)
    try:
        manifest = shards.read_manifest(fs, root)
    except shards.ShardDirError as exc:
        raise ConfigError(str(exc)) from None
    targets: dict[str, dict[str, list[str]]] = {}
    names: dict[str, str] = {}
    problems = []
    for path, (item, shard, kind) in shards.read_index(fs, root, manifest).items():
        name = units.output_name(path, kind)
        if name in names:
            problems.append(f"{path} and {names[name]} would both be written as {name}; {path} left out")
            continue
        names[name] = path
        targets.setdefault(shard, {}).setdefault(item, []).append(path)
    written, size, renamed = 0, 0, {}
    with dask_client(settings) as client:
        entries = {entry["name"]: entry for entry in manifest["shards"]}
        futures = [client.submit(units.decompress_shard, sharddir, shard, items, out, entries.get(shard),
                                 key=f"decompress-{shard}", retries=2, pure=False)
                   for shard, items in targets.items()]
        for future in progress(distributed.as_completed(futures), total=len(futures), description="decompress"):
            try:
                result = future.result()
            except Exception as exc:
                problems.append(f"{future.key} failed ({type(exc).__name__}: {exc})")
                continue
            written += result["written"]
            size += result["bytes"]
            problems += result["problems"]
            renamed.update(result["renamed"])
    if renamed:
        out_fs, out_root = shards.open_dir(out)
        mapping = f"{out_root}/{RENAMED}"
        shards.put_atomic(out_fs, mapping, json.dumps(renamed, indent=1, sort_keys=True).encode())
        problems += [f"{path}: name too long for {out}; written as {name} (all renames in {mapping})"
                     for path, name in sorted(renamed.items())]
    elapsed = time.time() - started
    report = [f"decompress {sharddir} -> {out}: {written} of {len(names)} file(s), {_mb(size)}, {elapsed:.1f} s, "
              f"{written / elapsed if elapsed else 0:.1f} files/s"]
    return {"report": report, "problems": problems, "written": written, "bytes": size}

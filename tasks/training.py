"""Train a codec on WORKDIR/patches, track it in MLflow and register it as a model version.

Plain functions take plain values (paths, run ids, small dicts) and talk to MLflow through ``MlflowClient`` with
explicit run ids, so a run can be resumed from another process. The Prefect @task wrappers are at the bottom.

The patch stream is a pure function of (seed, step): batch ``k`` always holds samples ``[k*B, (k+1)*B)`` of one
endless seeded sequence, so a training resumed from a checkpoint at step ``k`` sees exactly the batches an
uninterrupted one would have seen.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from sae_model import evaluate

EXPERIMENT = "saepress"
CHECKPOINT = "checkpoints/last.pt"
CONFIG_ARTIFACT = "config/training.json"
TAG = "saepress."  # prefix of every run and model-version tag this module sets


@dataclass(frozen=True)
class LoopConfig:
    """Everything about a training run that is not the model's own hyper-parameters."""

    evaluations: int = 4             # validation passes, evenly spaced; the last one is at the final step
    checkpoint_every: int = 100      # steps between checkpoints logged to the run
    log_every: int = 25              # per-step metrics are sent to MLflow in batches of this many steps
    val_images: int = 4              # validation images used for real bpp/PSNR and BD-rate
    val_crop: int | None = 256       # centre crop of each validation image: keeps a validation pass to seconds on CPU
    qualities: tuple[float, ...] = evaluate.QUALITIES["saepress"]
    init_samples: int = 8192         # patches for the trainer's data-driven initialisation
    window_rows: int = 65536         # shuffle window: patches loaded (and permuted) together, ~48 MiB at dim 192

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "LoopConfig":
        return cls(**{**values, "qualities": tuple(values["qualities"])})

    def evaluation_steps(self, steps: int) -> list[int]:
        count = max(1, min(self.evaluations, steps))
        return sorted({math.ceil(steps * (i + 1) / count) for i in range(count)})


# --------------------------------------------------------------------------------------------- patch dataset
@dataclass(frozen=True)
class Chunk:
    """One row group of one part file, with how many training rows it holds."""

    path: str
    row_group: int
    rows: int


def patch_files(workdir: str) -> list[Path]:
    return sorted((Path(workdir) / "patches").glob("part-*.parquet"))


def describe_patches(workdir: str) -> dict[str, Any]:
    """Index the training rows per row group and collect the dataset's metadata, reading only small columns."""
    files = patch_files(workdir)
    if not files:
        raise FileNotFoundError(f"no part-*.parquet files in {Path(workdir) / 'patches'}")
    chunks: list[Chunk] = []
    val_ids: set[str] = set()
    file_rows: dict[str, dict[str, Any]] = {}
    meta = _file_metadata(files[0])
    for path in files:
        parquet = pq.ParquetFile(path)
        if _file_metadata(path) != meta:
            raise ValueError(f"{path} has different saepress metadata than {files[0]}; re-run extract")
        train_rows = 0
        for group in range(parquet.metadata.num_row_groups):
            table = parquet.read_row_group(group, columns=["image_id", "split"])
            is_train = pc.equal(table["split"], "train")
            rows = int(pc.sum(is_train).as_py() or 0)
            val_ids.update(pc.unique(table.filter(pc.invert(is_train))["image_id"]).to_pylist())
            if rows:
                chunks.append(Chunk(str(path), group, rows))
            train_rows += rows
        file_rows[path.name] = {"rows": parquet.metadata.num_rows, "train_rows": train_rows,
                                "bytes": path.stat().st_size, "sha256": _sha256(path)}
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


def _file_metadata(path: Path) -> dict[str, str]:
    raw = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items() if k.startswith(b"saepress.")}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


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
            parquet = self._files.get(chunk.path) or self._files.setdefault(chunk.path, pq.ParquetFile(chunk.path))
            table = parquet.read_row_group(chunk.row_group, columns=["split", "patch"])
            column = table.filter(pc.equal(table["split"], "train"))["patch"].combine_chunks()
            parts.append(column.flatten().to_numpy(zero_copy_only=False).reshape(-1, self.dim))
        return np.concatenate(parts).astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------- validation images
def fetch_validation_images(workdir: str, image_ids: list[str], count: int) -> list[tuple[str, bytes]]:
    """The original files of up to ``count`` validation images (first by path), read through the catalog's source."""
    from tasks.sources import open_source

    catalog = pq.read_table(Path(workdir) / "catalog.parquet", columns=["id", "path", "status"])
    source_url = (catalog.schema.metadata or {}).get(b"saepress.source", b"").decode()
    if not source_url:
        raise ValueError(f"{Path(workdir) / 'catalog.parquet'} has no saepress.source metadata")
    wanted = set(image_ids)
    paths: dict[str, str] = {}
    for row in catalog.filter(pc.equal(catalog["status"], "ok")).to_pylist():
        if row["id"] in wanted:
            paths.setdefault(row["id"], row["path"])
    chosen = sorted(paths.values())[:count]
    return sorted(open_source(source_url).read_many(chosen))


def decode_validation_images(files: list[tuple[str, bytes]], crop: int | None) -> list["Image.Image"]:  # noqa: F821
    from PIL import Image, ImageOps

    images = []
    for name, data in files:
        image = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
        if crop and (image.width > crop or image.height > crop):
            w, h = min(crop, image.width), min(crop, image.height)
            left, top = (image.width - w) // 2, (image.height - h) // 2
            image = image.crop((left, top, left + w, top + h))
        # sae_model.evaluate tells images apart by .filename (for the per-image BD-rate); converted copies lose it.
        image.filename = name
        images.append(image)
    return images


class Validator:
    """Real encode/decode rate-distortion of a codec on the validation images, against JPEG on the same images."""

    def __init__(self, images: list, qualities: tuple[float, ...]):
        self.images, self.qualities = images, tuple(qualities)
        self.jpeg = evaluate.reference_curve("jpeg", images, evaluate.QUALITIES["jpeg"])

    def summary(self, codec) -> dict[str, Any]:
        return evaluate.summarise({"saepress": evaluate.codec_curve(codec, self.images, self.qualities),
                                   "jpeg": self.jpeg})

    @staticmethod
    def metrics(summary: dict[str, Any]) -> dict[str, float]:
        curve = summary["codecs"]["saepress"]
        values = {"val/bd_rate_vs_jpeg": float(curve["bd_rate_vs_jpeg"])}
        for quality, bpp, psnr in zip(curve["quality"], curve["bpp"], curve["psnr"]):
            values[f"val/psnr_q{quality:g}"] = float(psnr)
            values[f"val/bpp_q{quality:g}"] = float(bpp)
        return values

    def bd_rate(self, codec) -> float:
        return bd_rate_of(self.summary(codec))


def bd_rate_of(summary: dict[str, Any]) -> float:
    return float(summary["codecs"]["saepress"]["bd_rate_vs_jpeg"])


# --------------------------------------------------------------------------------------------- MLflow runs
def client():
    from mlflow import MlflowClient

    return MlflowClient()


def experiment_id(artifact_root: str, name: str = EXPERIMENT) -> str:
    """Experiment ``name``, created with the saepress artifact root when the store is local."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client()
    existing = mlflow_client.get_experiment_by_name(name)
    if existing:
        return existing.experiment_id
    # A tracking server decides where its artifacts live (--serve-artifacts); a local store keeps them in the
    # saepress home instead of ./mlruns of whatever folder the command ran in.
    local = not mlflow_client.tracking_uri.startswith(("http://", "https://", "databricks"))
    try:
        return mlflow_client.create_experiment(name, artifact_location=artifact_root if local else None)
    except MlflowException:  # created concurrently by another job
        return mlflow_client.get_experiment_by_name(name).experiment_id


def training_config(steps: int | None, seed: int, loop: LoopConfig | None = None,
                    **model: Any) -> dict[str, Any]:
    """The full configuration of a training as JSON-able dicts: the codec's TrainConfig and the loop's settings."""
    from sae_model import TrainConfig

    train = dataclasses.replace(TrainConfig(), seed=seed, **({"steps": steps} if steps else {}), **model)
    return {"train": dataclasses.asdict(train), "loop": dataclasses.asdict(loop or LoopConfig())}


def start_run(workdir: str, config: dict[str, Any], dataset: dict[str, Any], artifact_root: str) -> str:
    """Create the run: every setting as a param, the config and the training-data manifest as artifacts."""
    mlflow_client = client()
    run = mlflow_client.create_run(experiment_id(artifact_root), tags={
        "mlflow.runName": f"train-{Path(workdir).name}-seed{config['train']['seed']}",
        TAG + "workdir": str(Path(workdir).resolve()),
        TAG + "data_hash": dataset["data_hash"],
        TAG + "code_version": code_version(),
    })
    params = {f"train.{k}": v for k, v in config["train"].items()}
    params |= {f"loop.{k}": v for k, v in config["loop"].items()}
    params |= {"data.catalog_sha256": dataset["catalog_sha256"], "data.hash": dataset["data_hash"],
               "data.train_rows": dataset["train_rows"], "data.files": len(dataset["files"]),
               "data.val_images": len(dataset["val_image_ids"])}
    _log_params(mlflow_client, run.info.run_id, params)
    manifest = {key: dataset[key] for key in ("catalog_sha256", "data_hash", "patch_spec", "patch_metadata",
                                              "files", "train_rows", "val_image_ids")}
    manifest["workdir"] = str(Path(workdir).resolve())
    _log_json(mlflow_client, run.info.run_id, config, CONFIG_ARTIFACT)
    _log_json(mlflow_client, run.info.run_id, manifest, "manifest/training_data.json")
    return run.info.run_id


def _log_params(mlflow_client, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, json.dumps(v) if isinstance(v, (list, tuple, dict)) else str(v)) for k, v in params.items()]
    for i in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
        mlflow_client.log_batch(run_id, params=items[i:i + 100])


def _log_json(mlflow_client, run_id: str, value: Any, artifact_file: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_file).name
        path.write_text(json.dumps(value, indent=2, sort_keys=True))
        mlflow_client.log_artifact(run_id, str(path), str(Path(artifact_file).parent))


def load_run_config(run_id: str) -> dict[str, Any]:
    """The configuration a run was started with, for resuming it exactly."""
    import mlflow.artifacts

    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=CONFIG_ARTIFACT, dst_path=tmp)
        return json.loads(Path(path).read_text())


def code_version() -> str:
    """Package version plus the git commit of the source tree when it is a checkout (``+dirty`` if modified)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version("saepress")
    except PackageNotFoundError:
        text = "unknown"
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return text
    return f"{text}+g{commit}{'.dirty' if dirty else ''}"


class MetricBuffer:
    """Per-step metrics, sent to MLflow in batches: one request per step would dominate a CPU training's time."""

    def __init__(self, mlflow_client, run_id: str):
        self.client, self.run_id, self.pending = mlflow_client, run_id, []

    def add(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [Metric(key, float(value), now, step) for key, value in values.items()]

    def flush(self) -> None:
        for i in range(0, len(self.pending), 1000):  # MLflow accepts at most 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=self.pending[i:i + 1000])
        self.pending = []


# --------------------------------------------------------------------------------------------- training loop
def use_all_cpu_cores() -> int:
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(cores)
    return cores


def train(run_id: str, config: dict[str, Any], dataset: dict[str, Any],
          val_files: list[tuple[str, bytes]]) -> dict[str, Any]:
    """Train (or continue training from the run's checkpoint) and log everything to the run.

    Returns the step count, the final validation metrics, the BD-rate vs JPEG and the codec's fingerprint.
    """
    import torch

    from sae_model import Trainer, TrainConfig

    loop = LoopConfig.from_dict(config["loop"])
    train_config = TrainConfig(**config["train"])
    steps, batch_size = train_config.steps, train_config.batch_size
    mlflow_client = client()
    trainer = Trainer(train_config, device=None)
    cores = use_all_cpu_cores() if trainer.device == "cpu" else None
    mlflow_client.set_tag(run_id, TAG + "device", trainer.device if cores is None else f"cpu ({cores} threads)")

    stream = PatchStream(dataset["chunks"], dim=dataset["patch_spec"]["dim"], seed=train_config.seed,
                         window_rows=loop.window_rows)
    checkpoint = _download_checkpoint(run_id)
    if checkpoint is None:
        torch.manual_seed(train_config.seed)
        trainer.initialize(stream.head(loop.init_samples))
    else:
        trainer.load_state_dict(checkpoint["trainer"])
        torch.set_rng_state(checkpoint["torch_rng"])
    start = trainer.step_count
    validator = Validator(decode_validation_images(val_files, loop.val_crop), loop.qualities)
    evaluation_steps = set(loop.evaluation_steps(steps))
    metrics = MetricBuffer(mlflow_client, run_id)
    summary, summary_step = None, None
    clock, clock_step = time.perf_counter(), start

    for step, batch in zip(range(start + 1, steps + 1), stream.batches(batch_size, start)):
        values = trainer.step(batch)
        metrics.add(step, {f"train/{key}": value for key, value in values.items()})
        if step % loop.log_every == 0 or step == steps:
            elapsed = time.perf_counter() - clock
            metrics.add(step, {"train/samples_per_s": (step - clock_step) * batch_size / max(elapsed, 1e-9)})
            clock, clock_step = time.perf_counter(), step
            metrics.flush()
        if step in evaluation_steps:
            summary, summary_step = validator.summary(trainer.to_codec()), step
            metrics.add(step, validator.metrics(summary))
            metrics.flush()
        if step % loop.checkpoint_every == 0 or step == steps:
            metrics.flush()
            _upload_checkpoint(run_id, trainer, step)

    codec = trainer.to_codec()
    if summary_step != steps:  # resumed from the final checkpoint: nothing left to train, nothing measured yet
        summary = validator.summary(codec)
    _log_model_artifacts(mlflow_client, run_id, codec, summary)
    return {"steps": trainer.step_count, "bd_rate": bd_rate_of(summary),
            "validation": validator.metrics(summary), "device": trainer.device, "fingerprint": codec.fingerprint}


def _upload_checkpoint(run_id: str, trainer, step: int) -> None:
    import torch

    state = {"trainer": trainer.state_dict(), "torch_rng": torch.get_rng_state()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(CHECKPOINT).name
        torch.save(state, path)
        client().log_artifact(run_id, str(path), str(Path(CHECKPOINT).parent))
    client().log_metric(run_id, "checkpoint_step", step, step=step)


def _download_checkpoint(run_id: str) -> dict[str, Any] | None:
    import mlflow.artifacts
    import torch

    if not any(f.path == CHECKPOINT for f in client().list_artifacts(run_id, str(Path(CHECKPOINT).parent))):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=CHECKPOINT, dst_path=tmp)
        # weights_only: a checkpoint is tensors, numbers and dicts; never unpickle arbitrary objects.
        # map_location: a run checkpointed on a GPU can be resumed on a machine without one.
        return torch.load(path, weights_only=True, map_location="cpu")


def _log_model_artifacts(mlflow_client, run_id: str, codec, summary: dict[str, Any]) -> None:
    from sae_model import atoms_image

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        codec.save(model_dir)
        mlflow_client.log_artifacts(run_id, str(model_dir), "model")
        plots = Path(tmp) / "plots"
        plots.mkdir()
        atoms_image(codec).save(plots / "atoms.png")
        evaluate.rd_plot(summary, plots / "rd.png")
        mlflow_client.log_artifacts(run_id, str(plots), "plots")
        (Path(tmp) / "rd.json").write_text(json.dumps(summary, indent=2, default=float))
        mlflow_client.log_artifact(run_id, str(Path(tmp) / "rd.json"), "plots")


# --------------------------------------------------------------------------------------------- registry
def register(run_id: str, model_name: str, fingerprint: str, bd_rate: float) -> str:
    """A new version of ``model_name`` whose source is the run's ``model/`` artifacts; alias ``candidate``."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client()
    try:
        mlflow_client.create_registered_model(model_name, description="saepress sparse-autoencoder codec")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    run = mlflow_client.get_run(run_id)
    version = mlflow_client.create_model_version(
        model_name, source=f"{run.info.artifact_uri}/model", run_id=run_id,
        tags={"data_hash": run.data.tags[TAG + "data_hash"], "code_version": run.data.tags[TAG + "code_version"],
              "fingerprint": fingerprint, "val_bd_rate_vs_jpeg": f"{bd_rate:.4f}"})
    mlflow_client.set_registered_model_alias(model_name, "candidate", version.version)
    mlflow_client.set_tag(run_id, TAG + "model_version", version.version)
    return str(version.version)


def champion_version(model_name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client().get_model_version_by_alias(model_name, "champion").version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def decide_champion(run_id: str, model_name: str, version: str, val_files: list[tuple[str, bytes]],
                    loop: dict[str, Any], promote: bool) -> dict[str, Any]:
    """Move ``champion`` to ``version`` if it has the lower BD-rate on this run's validation images (or if forced).

    Both models are loaded through the registry and measured here, one after the other on the same images: the
    encoder's float32 decisions can differ in the last bits between processes, so numbers from the training loop
    and from here are not compared. The decision and both numbers go to the run's tags and metrics.
    """
    from sae_model import Codec

    mlflow_client = client()
    current = champion_version(model_name)
    config = LoopConfig.from_dict(loop)
    validator = Validator(decode_validation_images(val_files, config.val_crop), config.qualities)
    candidate_bd_rate = validator.bd_rate(Codec.load(f"models:/{model_name}/{version}"))
    champion_bd_rate = None
    if current is not None:
        champion_bd_rate = validator.bd_rate(Codec.load(f"models:/{model_name}@champion"))
    promoted, reason = champion_decision(current, candidate_bd_rate, champion_bd_rate, promote)
    if promoted:
        mlflow_client.set_registered_model_alias(model_name, "champion", version)
    decision = {"decision": "promoted" if promoted else "kept", "reason": reason, "candidate_version": version,
                "candidate_bd_rate": candidate_bd_rate, "champion_version": current,
                "champion_bd_rate": champion_bd_rate}
    for key, value in decision.items():
        mlflow_client.set_tag(run_id, f"{TAG}champion.{key}", "" if value is None else str(value))
    mlflow_client.log_metric(run_id, "decision/candidate_bd_rate", candidate_bd_rate)
    if champion_bd_rate is not None:
        mlflow_client.log_metric(run_id, "decision/champion_bd_rate", champion_bd_rate)
    mlflow_client.set_model_version_tag(model_name, version, "champion_decision", decision["decision"])
    return decision


def champion_decision(champion: str | None, candidate_bd_rate: float, champion_bd_rate: float | None,
                      promote: bool) -> tuple[bool, str]:
    """Whether the candidate becomes champion, and why. A NaN BD-rate (no PSNR overlap with JPEG) never wins."""
    if champion is None:
        return True, "no champion yet"
    if promote:
        return True, "forced by --promote"
    if candidate_bd_rate < champion_bd_rate or (math.isnan(champion_bd_rate) and not math.isnan(candidate_bd_rate)):
        return True, "lower BD-rate"
    return False, "BD-rate not lower"


def finish_run(run_id: str, status: str = "FINISHED") -> None:
    client().set_terminated(run_id, status)


# --------------------------------------------------------------------------------------------- Prefect tasks
# NO_CACHE everywhere: each call has side effects (a new run, a new version) that a cached result would skip.
describe_patches_task = task(describe_patches, name="describe-patches", retries=2, retry_delay_seconds=5,
                             cache_policy=NO_CACHE)
fetch_validation_task = task(fetch_validation_images, name="fetch-validation-images", retries=2,
                             retry_delay_seconds=5, cache_policy=NO_CACHE)
# Not retried: a retry after a lost reply would create a second run (or a second model version, below).
start_run_task = task(start_run, name="start-mlflow-run", cache_policy=NO_CACHE)
# Not retried either: an interrupted training is continued from its checkpoint with --resume, not started over.
train_task = task(train, name="train-codec", cache_policy=NO_CACHE)
register_task = task(register, name="register-model-version", cache_policy=NO_CACHE)
decide_champion_task = task(decide_champion, name="decide-champion", retries=2, retry_delay_seconds=5,
                            cache_policy=NO_CACHE)

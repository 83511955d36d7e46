"""MLflow bookkeeping of a training run: experiment, params, config and data manifest, batched metrics, status.

Everything talks to MLflow through ``MlflowClient`` with explicit run ids, so a run can be resumed from another
process.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tasks import store

EXPERIMENT = "saepress"
CONFIG_ARTIFACT = "config/training.json"
TAG = "saepress."  # prefix of every run and model-version tag saepress sets


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


def start_run(workdir: str, config: dict[str, Any], dataset: dict[str, Any], artifact_root: str) -> str:
    """Create the run: every setting as a param, the config and the training-data manifest as artifacts."""
    mlflow_client = client()
    run = mlflow_client.create_run(experiment_id(artifact_root), tags={
        "mlflow.runName": f"train-{store.basename(workdir)}-seed{config['train']['seed']}",
        TAG + "workdir": store.location(workdir),
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
    manifest["workdir"] = store.location(workdir)
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


def finish_run(run_id: str, status: str = "FINISHED") -> None:
    client().set_terminated(run_id, status)

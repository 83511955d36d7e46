"""The MLflow lineage run of a compress job: which shard set was written with which model version."""
from __future__ import annotations

import tempfile
from pathlib import Path

import fsspec
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.tracking import experiment_id

EXPERIMENT = "saepress-compress"


@task(retries=1, retry_delay_seconds=2, cache_policy=NO_CACHE)
def log_lineage(artifact_root: str, out: str, model: dict, parameters: dict, metrics: dict, job: str,
                report_url: str | None = None) -> str:
    """An MLflow run in experiment EXPERIMENT tying the shard set to the model version, with the job's report."""
    import mlflow

    mlflow.set_experiment(experiment_id=experiment_id(f"{artifact_root}/compress", EXPERIMENT))
    tags = {"saepress.shard_dir": out, "saepress.job": job, "saepress.model_uri": model["uri"],
            "saepress.model_fingerprint": model["fingerprint"], "saepress.model_version": model["version"] or "",
            "saepress.model_run_id": model["run_id"] or ""}
    with mlflow.start_run(run_name=f"compress {job}", tags=tags) as run:
        mlflow.log_params({k: v for k, v in parameters.items() if v is not None})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})
        if report_url:
            with tempfile.TemporaryDirectory(prefix="saepress-report-") as tmp:
                local = Path(tmp) / Path(report_url).name
                fs, path = fsspec.core.url_to_fs(report_url)
                local.write_bytes(fs.cat_file(path))
                mlflow.log_artifact(str(local))
    return run.info.run_id

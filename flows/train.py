"""`saepress train WORKDIR`: patches -> a trained codec -> an MLflow run and a registered model version.

Training runs in this process (one GPU or all CPU cores), not on Dask: it is one job that wants the whole machine.
"""
from __future__ import annotations

import time
from typing import Any

from prefect import flow

from flows.settings import Settings
from tasks import defaults, patch_stream, store, tracking, training, training_tasks
from tasks.errors import ConfigError


@flow(name="saepress-train", log_prints=True)
def train_flow(workdir: str, steps: int | None = None, seed: int = defaults.TRAIN_SEED,
               model_name: str | None = None, promote: bool = False, resume: str | None = None,
               start: str = defaults.TRAIN_START) -> dict[str, Any]:
    settings = Settings.resolve(model_name=model_name).prepare()
    root = store.location(workdir)
    if not patch_stream.patch_files(root):
        raise ConfigError(f"no patch dataset in {store.join(root, 'patches')}; run `saepress extract {workdir}` first")
    if steps is not None and steps < 1:
        raise ConfigError(f"--steps must be at least 1, got {steps}")

    _check_tracking_store(settings)
    dataset = training_tasks.describe_patches_task(root)
    _check_patch_spec(dataset)
    if not dataset["val_image_ids"]:
        raise ConfigError("the patch dataset has no validation images; re-run extract with --val-fraction > 0")
    if resume:
        run_id, config = resume, _resumable_config(resume, steps, dataset)
    else:
        config = training.training_config(steps, seed, start=start, train_rows=dataset["train_rows"])
        run_id = training_tasks.start_run_task(root, config, dataset, settings.mlflow_artifact_root)
    print(f"MLflow run {run_id} at {settings.mlflow_tracking_uri}")

    started = time.perf_counter()
    try:
        val_files = training_tasks.fetch_validation_task(root, dataset["val_image_ids"],
                                                         config["loop"]["val_images"])
        result = training_tasks.train_task(run_id, config, dataset, val_files)
        seconds = time.perf_counter() - started
        version = training_tasks.register_task(run_id, settings.model_name, result["fingerprint"], result["bd_rate"])
        decision = training_tasks.decide_champion_task(run_id, settings.model_name, version, val_files,
                                                       config["loop"], promote)
    except KeyboardInterrupt:
        tracking.finish_run(run_id, "KILLED")
        raise
    except BaseException:
        tracking.finish_run(run_id, "FAILED")
        raise
    tracking.finish_run(run_id)

    name = settings.model_name
    report = [
        f"trained {result['steps']} steps ({config['loop']['start']} start) on {result['device']} in "
        f"{seconds:.0f} s{' (resumed)' if resume else ''}: validation BD-rate vs JPEG {result['bd_rate']:+.1f}% "
        f"on {len(val_files)} images",
        f"MLflow run {run_id} ({settings.mlflow_tracking_uri})",
        f"registered models:/{name}/{version} (alias candidate)",
        *comparison_table(decision),
        _decision_line(name, decision),
    ]
    return {"report": report, "problems": [], "model_uri": f"models:/{name}/{version}", "run_id": run_id,
            "version": version, "bd_rate": result["bd_rate"], "decision": decision}


def _check_tracking_store(settings: Settings) -> None:
    from mlflow.exceptions import MlflowException

    try:
        tracking.client().search_experiments(max_results=1)
    except (MlflowException, OSError) as exc:
        raise ConfigError(f"cannot use the MLflow tracking store {settings.mlflow_tracking_uri} "
                          f"({type(exc).__name__}); start the server or unset MLFLOW_TRACKING_URI to use the "
                          "embedded SQLite store") from None


def _check_patch_spec(dataset: dict[str, Any]) -> None:
    from sae_model import PATCH_SPEC

    if dataset["patch_spec"] != PATCH_SPEC:
        raise ConfigError(f"the patches were extracted with patch spec {dataset['patch_spec']}, this codec uses "
                          f"{PATCH_SPEC}; re-run `saepress extract`")


def _resumable_config(run_id: str, steps: int | None, dataset: dict[str, Any]) -> dict[str, Any]:
    """The run's own configuration, after checking the run can be continued on this dataset."""
    from mlflow.exceptions import MlflowException

    try:
        run = tracking.client().get_run(run_id)
    except MlflowException:
        raise ConfigError(f"no MLflow run {run_id} in the tracking store; check --resume and MLFLOW_TRACKING_URI")
    if run.info.status == "FINISHED":
        raise ConfigError(f"run {run_id} already finished (model version "
                          f"{run.data.tags.get(tracking.TAG + 'model_version', '?')}); nothing to resume")
    trained_on = run.data.tags.get(tracking.TAG + "data_hash", "")
    if trained_on != dataset["data_hash"]:
        raise ConfigError(f"run {run_id} trained on other patches (data hash {trained_on[:12]}, this WORKDIR has "
                          f"{dataset['data_hash'][:12]}); resume it with the WORKDIR it started on")
    config = tracking.load_run_config(run_id)
    if steps is not None and steps != config["train"]["steps"]:
        raise ConfigError(f"run {run_id} was started with {config['train']['steps']} steps; "
                          "a resumed run keeps its configuration (drop --steps)")
    tracking.client().update_run(run_id, "RUNNING")
    return config


def comparison_table(decision: dict[str, Any]) -> list[str]:
    """The champion decision's measurements as a few lines: every contender and reference on the same images."""
    quality = decision["table"][0]["quality"]
    lines = [f"validation: {decision['validation_images']} images, {decision['validation_pixels']:,} pixels",
             f"  {'':<10}{'BD-rate vs JPEG':>16}{f'bpp @q{quality:g}':>11}{f'PSNR @q{quality:g}':>11}  model"]
    for row in decision["table"]:
        lines.append(f"  {row['name']:<10}{row['bd_rate']:>+15.1f}%{row['bpp']:>11.3f}{row['psnr']:>11.2f}"
                     f"  {row['model'] or ''}")
    return lines


def _decision_line(name: str, decision: dict[str, Any]) -> str:
    if decision["decision"] == "promoted":
        champion = f"models:/{name}/{decision['candidate_version']}"
    elif decision["champion_version"] is not None:
        champion = f"models:/{name}/{decision['champion_version']}"
    else:
        champion = "none (compress uses the shipped default)"
    return f"decision: {decision['decision']} ({decision['reason']}); champion: {champion}"

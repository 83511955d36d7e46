"""The model registry: a trained run becomes a model version, and the champion decision moves the alias.

``candidate`` names the latest registered version, ``champion`` the one compress uses by default. The promotion
rule is one function, champion_decision.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from sae_model import evaluate
from tasks import defaults
from tasks.errors import ConfigError
from tasks.tracking import TAG, client
from tasks.training import LoopConfig
from tasks.validation import Validator, decode_validation_images

CHAMPION = "champion"
DEFAULT_URI = "sae_model:pretrained"  # how compress records (and accepts) the shipped default model
REFERENCES = ("webp",)  # formats measured beside JPEG (the BD-rate anchor) in the champion decision
CANDIDATE = "candidate"
# Error codes of a registry lookup that found nothing (no such model, alias or version).
NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


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
    mlflow_client.set_registered_model_alias(model_name, CANDIDATE, version.version)
    mlflow_client.set_tag(run_id, TAG + "model_version", version.version)
    return str(version.version)


def lookup(uri: str):
    """The model version ``models:/name@alias`` or ``models:/name/N`` names, or None when there is no such one."""
    if _no_local_store():
        return None
    from mlflow.exceptions import MlflowException

    name, _, alias = uri[len("models:/"):].partition("@")
    try:
        if alias:
            return client().get_model_version_by_alias(name, alias)
        name, _, number = name.partition("/")
        return client().get_model_version(name, number)
    except MlflowException as exc:
        if exc.error_code in NOT_FOUND:
            return None
        raise


def _no_local_store() -> bool:
    """A SQLite tracking store that does not exist yet registers nothing, and opening it would first create its
    tables (seconds on a loaded machine: a first compress paid them before its first task)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    return uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists()


def resolve(uri: str) -> tuple[str | None, str | None, str | None]:
    """``models:/name@alias`` or ``models:/name/N`` -> (``models:/name/N``, N, training run id).

    Without a champion (no such model or alias) the default is the pretrained model: (None, None, None).
    """
    from mlflow.exceptions import MlflowException

    try:
        found = lookup(uri)
    except MlflowException as exc:
        raise ConfigError(f"cannot resolve {uri} in MLflow ({exc.message})") from None
    if found is None:
        if uri.endswith(f"@{CHAMPION}"):
            return None, None, None
        raise ConfigError(f"cannot resolve {uri} in MLflow (no such registered model, alias or version)")
    return f"models:/{found.name}/{found.version}", str(found.version), found.run_id


def champion_version(model_name: str) -> str | None:
    found = lookup(f"models:/{model_name}@{CHAMPION}")
    return None if found is None else str(found.version)


def decide_champion(run_id: str, model_name: str, version: str, val_files: list[tuple[str, bytes]],
                    loop: dict[str, Any], promote: bool) -> dict[str, Any]:
    """Move ``champion`` to ``version`` only if it beats both incumbents: the champion and the shipped default.

    The candidate, the champion (if any), the shipped default, JPEG and WebP are all measured here, one after the
    other on the same validation images: the encoder's float32 decisions can differ in the last bits between
    processes, so numbers from the training loop and from here are not compared. The numbers, the decision and an
    RD plot of the same codecs go to the run. ``compress_with`` names the best of the three models on these images
    (``None``: the shipped default), for a job that compresses this archive next.
    """
    from sae_model import Codec

    mlflow_client = client()
    current = champion_version(model_name)
    config = LoopConfig.from_dict(loop)
    validator = Validator(decode_validation_images(val_files, config.val_crop), config.qualities)
    models = {"candidate": f"models:/{model_name}/{version}"}
    if current is not None:
        models["champion"] = f"models:/{model_name}/{current}"
    codecs = {name: Codec.load(uri) for name, uri in models.items()}
    codecs["default"] = Codec.pretrained()
    comparison = validator.compare(codecs, REFERENCES, defaults.QUALITY)
    bd = {name: comparison["summary"]["codecs"][name]["bd_rate_vs_jpeg"] for name in comparison["points"]}
    shortfall = validation_shortfall(comparison["images"], comparison["pixels"], config)
    promoted, reason = champion_decision(bd["candidate"], bd.get("champion"), bd["default"], promote, shortfall)
    if promoted:
        mlflow_client.set_registered_model_alias(model_name, CHAMPION, version)
    incumbents = ("champion", "default") if current is not None else ("default",)
    best = "candidate" if promoted else min(incumbents, key=lambda name: (math.isnan(bd[name]), bd[name]))
    decision = {"decision": "promoted" if promoted else "kept", "reason": reason, "candidate_version": version,
                "candidate_bd_rate": bd["candidate"], "champion_version": current,
                "champion_bd_rate": bd.get("champion"), "default_bd_rate": bd["default"],
                "default_fingerprint": codecs["default"].fingerprint,
                "validation_images": comparison["images"], "validation_pixels": comparison["pixels"],
                "compress_with": None if best == "default" else models[best]}
    decision["table"] = [{"name": name, "model": models.get(name, DEFAULT_URI if name == "default" else None),
                          "bd_rate": bd[name], "quality": comparison["quality"], **comparison["points"][name]}
                         for name in comparison["points"]]
    _log_decision(mlflow_client, run_id, model_name, version, decision, comparison["summary"])
    return decision


def validation_shortfall(images: int, pixels: int, config: LoopConfig) -> str | None:
    """Why there is too little validation data for a promotion, and how much is needed; None when enough."""
    if images >= config.min_val_images and pixels >= config.min_val_pixels:
        return None
    return (f"too little validation data to decide ({images} images, {pixels:,} pixels; a promotion needs at least "
            f"{config.min_val_images} images and {config.min_val_pixels:,} pixels): extract an archive with more "
            f"images or a larger --val-fraction, or force it with --promote")


def _log_decision(mlflow_client, run_id: str, model_name: str, version: str, decision: dict[str, Any],
                  summary: dict[str, Any]) -> None:
    for key, value in decision.items():
        if key != "table":
            mlflow_client.set_tag(run_id, f"{TAG}champion.{key}", "" if value is None else str(value))
    for row in decision["table"]:
        quality = f"q{row['quality']:g}"
        for metric, value in (("bd_rate", row["bd_rate"]), (f"bpp_{quality}", row["bpp"]),
                              (f"psnr_{quality}", row["psnr"])):
            if value is not None and math.isfinite(value):
                mlflow_client.log_metric(run_id, f"decision/{row['name']}_{metric}", value)
    with tempfile.TemporaryDirectory() as tmp:
        evaluate.rd_plot(summary, Path(tmp) / "rd.png")
        (Path(tmp) / "rd.json").write_text(json.dumps(summary, indent=2, default=float))
        mlflow_client.log_artifact(run_id, str(Path(tmp) / "rd.png"), "plots")
        mlflow_client.log_artifact(run_id, str(Path(tmp) / "rd.json"), "plots")
    mlflow_client.set_model_version_tag(model_name, version, "champion_decision", decision["decision"])


def champion_decision(candidate: float, champion: float | None, default: float, promote: bool,
                      shortfall: str | None = None) -> tuple[bool, str]:
    """Whether the candidate becomes champion, and why: it must have a lower BD-rate than the shipped default and
    than the champion (when there is one), measured on enough validation data. A NaN BD-rate (no PSNR overlap with
    JPEG) never wins; an incumbent's NaN loses to any number."""
    if promote:
        return True, "forced by --promote"
    if shortfall:
        return False, shortfall
    if math.isnan(candidate):
        return False, "the candidate's BD-rate is undefined (no PSNR overlap with JPEG)"
    incumbents = {"shipped default": default, **({} if champion is None else {"champion": champion})}
    better_or_equal = [name for name, value in incumbents.items() if not math.isnan(value) and value <= candidate]
    if better_or_equal:
        return False, f"BD-rate not lower than the {' and the '.join(better_or_equal)}'s"
    return True, f"lower BD-rate than the {' and the '.join(incumbents)}"

"""The model registry: a trained run becomes a model version, and the champion decision moves the alias.

``candidate`` names the latest registered version, ``champion`` the one compress uses by default. The promotion
rule is one function, champion_decision.
"""
from __future__ import annotations

import math
from typing import Any

from tasks.errors import ConfigError
from tasks.tracking import TAG, client
from tasks.training import LoopConfig
from tasks.validation import Validator, decode_validation_images

CHAMPION = "champion"
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
        champion_bd_rate = validator.bd_rate(Codec.load(f"models:/{model_name}@{CHAMPION}"))
    promoted, reason = champion_decision(current, candidate_bd_rate, champion_bd_rate, promote)
    if promoted:
        mlflow_client.set_registered_model_alias(model_name, CHAMPION, version)
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

"""Where saepress keeps its state and which servers it talks to.

Precedence: command-line flags > environment variables > ``saepress.toml`` > built-in defaults.
With nothing configured everything is embedded: Prefect's ephemeral server, a Dask ``LocalCluster``
and MLflow on a SQLite file under the saepress home.
"""
from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tasks import defaults
from tasks.errors import ConfigError

# Environment variable for each setting (flags win over these, these win over saepress.toml).
ENV_VARS = {
    "home": "SAEPRESS_HOME",
    "mlflow_tracking_uri": "MLFLOW_TRACKING_URI",
    "dask_address": "SAEPRESS_DASK_ADDRESS",
    "dask_workers": "SAEPRESS_DASK_WORKERS",
    "model_name": "SAEPRESS_MODEL_NAME",
}


@dataclass(frozen=True)
class Settings:
    home: Path
    mlflow_tracking_uri: str
    mlflow_artifact_root: str
    dask_address: str | None = None
    dask_workers: int | None = None
    model_name: str = defaults.MODEL_NAME
    config_path: Path | None = None
    schedules: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def resolve(cls, config_path: str | os.PathLike | None = None, **flags: Any) -> "Settings":
        """Merge flags, environment and saepress.toml; ``None`` flags mean "not given"."""
        path = _find_config(config_path)
        file_values = _read_config(path)
        merged: dict[str, Any] = {}
        names = {f.name for f in fields(cls)} - {"config_path", "schedules"}
        for name in names:
            if flags.get(name) is not None:
                merged[name] = flags[name]
            elif ENV_VARS.get(name) and os.environ.get(ENV_VARS[name]):
                merged[name] = os.environ[ENV_VARS[name]]
            elif name in file_values:
                merged[name] = file_values[name]
        unknown = set(file_values) - names - {"schedules"}
        if unknown:
            raise ConfigError(f"{path}: unknown setting(s) {sorted(unknown)}; known: {sorted(names)}")

        home = Path(merged.get("home") or _default_home()).expanduser().resolve()
        tracking = merged.get("mlflow_tracking_uri") or f"sqlite:///{home / 'mlflow.db'}"
        artifacts = merged.get("mlflow_artifact_root") or (home / "mlartifacts").as_uri()
        workers = merged.get("dask_workers")
        try:
            workers = int(workers) if workers is not None else None
        except ValueError:
            raise ConfigError(f"dask_workers must be a whole number, got {workers!r}") from None
        return cls(
            home=home,
            mlflow_tracking_uri=str(tracking),
            mlflow_artifact_root=str(artifacts),
            dask_address=merged.get("dask_address") or None,
            dask_workers=workers,
            model_name=str(merged.get("model_name") or defaults.MODEL_NAME),
            config_path=path,
            schedules=dict(file_values.get("schedules", {})),
        )

    def prepare(self) -> "Settings":
        """Create the home folder and point MLflow at the resolved tracking URI (Prefect defaults: flows/__init__)."""
        self.home.mkdir(parents=True, exist_ok=True)
        os.environ["MLFLOW_TRACKING_URI"] = self.mlflow_tracking_uri
        if "mlflow" in sys.modules:  # a URI set earlier in this process (a previous job) wins over the environment
            sys.modules["mlflow"].set_tracking_uri(self.mlflow_tracking_uri)
        return self

    @property
    def prefect_api_url(self) -> str | None:
        return os.environ.get("PREFECT_API_URL") or None


def _default_home() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("saepress"))


def _find_config(config_path: str | os.PathLike | None) -> Path | None:
    candidate = config_path or os.environ.get("SAEPRESS_CONFIG")
    if candidate:
        path = Path(candidate)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist (given by --config or SAEPRESS_CONFIG)")
        return path.resolve()
    local = Path("saepress.toml")
    return local.resolve() if local.is_file() else None


def _read_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return data.get("saepress", data)

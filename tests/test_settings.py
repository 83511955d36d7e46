"""Settings precedence: flags > environment > saepress.toml > defaults."""
from __future__ import annotations

import pytest

from flows.settings import Settings
from tasks.errors import ConfigError


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("SAEPRESS_DASK_ADDRESS", "SAEPRESS_MODEL_NAME", "MLFLOW_TRACKING_URI", "SAEPRESS_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "saepress.toml"
    path.write_text('[saepress]\ndask_address = "tcp://from-file:8786"\nmodel_name = "file-model"\n'
                    '[saepress.schedules.nightly]\nflow = "compress"\ncron = "0 2 * * *"\n')
    return path


def test_defaults_are_embedded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SAEPRESS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("SAEPRESS_DASK_ADDRESS", raising=False)
    settings = Settings.resolve()
    assert settings.dask_address is None
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}"
    assert settings.mlflow_artifact_root == (tmp_path / "home" / "mlartifacts").as_uri()


def test_file_then_environment_then_flag(config, monkeypatch):
    assert Settings.resolve().dask_address == "tcp://from-file:8786"
    assert Settings.resolve().schedules["nightly"]["cron"] == "0 2 * * *"
    monkeypatch.setenv("SAEPRESS_DASK_ADDRESS", "tcp://from-env:8786")
    assert Settings.resolve().dask_address == "tcp://from-env:8786"
    assert Settings.resolve(dask_address="tcp://from-flag:8786").dask_address == "tcp://from-flag:8786"
    assert Settings.resolve().model_name == "file-model"


@pytest.mark.parametrize("text, message", [
    ("[saepress]\nbogus = 1\n", "unknown setting"),
    ("[saepress\n", "not valid TOML"),
    ('[saepress]\ndask_workers = "many"\n', "whole number"),
])
def test_bad_config_says_what_is_wrong(config, text, message):
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        Settings.resolve()


def test_missing_config_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.resolve(config_path=tmp_path / "nope.toml")

"""Shared fixtures: an isolated saepress home per test session and one Prefect test harness for all flow tests."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

# Isolate every test session from the user's real saepress home, MLflow store and Prefect profile.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="saepress-tests-"))
os.environ["SAEPRESS_HOME"] = str(_SESSION_DIR / "home")
os.environ["PREFECT_HOME"] = str(_SESSION_DIR / "prefect-home")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
# Server commands (`dask scheduler`, `prefect server`, `mlflow server`) run from this environment even when
# it is not activated, as in CI's `.venv/bin/python -m pytest`.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
for _var in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "SAEPRESS_DASK_ADDRESS", "SAEPRESS_CONFIG"):
    os.environ.pop(_var, None)

DEV_IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dev-images"


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect server for the whole session (starting one costs ~35 s on 2 cores)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def dev_images() -> Path:
    if not DEV_IMAGES.is_dir():
        pytest.skip(f"dev images not found at {DEV_IMAGES}")
    return DEV_IMAGES

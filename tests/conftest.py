"""Shared fixtures: an isolated saepress home per test session and one Prefect test harness for all flow tests."""
from __future__ import annotations

import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
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


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect server for the whole session (starting one costs ~35 s on 2 cores)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def s3_server() -> dict[str, str]:
    """One moto S3 server for the session, on a port the OS picks (no race with other test runs), returned only
    once it answers HTTP; the value is the environment that points boto and s3fs at it. Buckets are shared by
    every test: give each test its own bucket name."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            break
        except urllib.error.HTTPError:  # an HTTP answer, whatever its status, means the server serves
            break
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the moto S3 server at {url} did not answer within 30 s") from None
            time.sleep(0.1)
    try:
        yield {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch) -> dict[str, str]:
    """The session's S3 server in this test's environment (and its children's), with no stale s3fs client."""
    import s3fs

    for name, value in s3_server.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()
    yield s3_server
    s3fs.S3FileSystem.clear_instance_cache()

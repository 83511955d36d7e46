"""What the terminal shows: progress and the final summary. The flow logs (Prefect's INFO lines, each file's
warnings) always go to a log file, and with ``-v`` to the console as well.

Prefect and MLflow read their logging settings from the environment when they are imported, so ``quiet()`` runs
before either is; a variable the user has set is left as it is.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

# Console only: the log file still gets every INFO line. Prefect's own warnings and errors still show.
QUIET = {"PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING", "MLFLOW_LOGGING_LEVEL": "WARNING"}
FORMAT = "%(asctime)s | %(levelname)-7s | %(name)s - %(message)s"


def quiet(verbose: bool) -> None:
    """Keep Prefect's and MLflow's INFO lines off the console unless ``verbose`` (call before importing them)."""
    if verbose:
        return
    for name, value in QUIET.items():
        os.environ.setdefault(name, value)


def log_to_file(folder: Path, command: str) -> Path:
    """Send the flow logs of this process to a new file under ``folder``; its path.

    Prefect's logging setup would replace the root logger's handlers (or keep its console away from a root that
    has one already), so it is done first."""
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.formatters import PrefectFormatter

    ensure_logging_setup()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{command}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(PrefectFormatter(
        FORMAT, flow_run_fmt="%(asctime)s | %(levelname)-7s | Flow run %(flow_run_name)r - %(message)s",
        task_run_fmt="%(asctime)s | %(levelname)-7s | Task run %(task_run_name)r - %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger("saepress").setLevel(logging.INFO)  # each file's warnings (tasks.warned) are INFO
    return path

"""Prefect flows (one per user job) and the `saepress` command line."""
import os

# Set before Prefect is imported: its ephemeral server needs ~35 s on 2 cores (default timeout 20 s), and
# telemetry from a machine without internet only prints errors (the client's also prints a notice on a terminal).
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

"""`saepress serve`: Prefect deployments of the saepress flows, fired on the schedules in saepress.toml.

Each ``[saepress.schedules.NAME]`` table becomes one deployment named NAME of its flow::

    [saepress.schedules.nightly]
    flow = "compress"                  # ingest | extract | train | compress
    cron = "0 2 * * *"                 # or: interval = 86400  (seconds)
    timezone = "Europe/Berlin"         # optional, for cron (default UTC)
    parameters = {source = "s3://archive/photos/", out = "s3://shards/photos", quality = 50}

The deployments are served in this process (Prefect runs each scheduled run in a child process) until the
process is stopped. Prefect's ephemeral server never runs the scheduler, so without ``PREFECT_API_URL`` a
persistent ``prefect server`` is started on loopback, with its database under the saepress home, and stopped
again on exit.
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.settings import Settings
from tasks.defaults import SERVE_PORT
from tasks.errors import ConfigError
from tasks.exact import check_fidelity

# Flow key in saepress.toml -> (module, function). Imported only when a schedule names it.
FLOWS = {
    "ingest": ("flows.ingest", "ingest_flow"),
    "extract": ("flows.extract", "extract_flow"),
    "train": ("flows.train", "train_flow"),
    "compress": ("flows.compress", "compress_flow"),
}
SCHEDULE_KEYS = {"flow", "cron", "interval", "timezone", "parameters", "description"}
# Parameters holding local paths; relative ones are taken relative to saepress.toml, because the runs start
# in whatever folder `saepress serve` was started from.
PATH_PARAMETERS = {"source", "out", "workdir", "sharddir", "resume"}

SERVER_START_TIMEOUT_S = 120  # a fresh server migrates its SQLite database first: ~10-40 s on 2 cores


@dataclass(frozen=True)
class Schedule:
    name: str
    flow: str
    cron: str | None
    interval: float | None
    timezone: str | None
    parameters: dict[str, Any]
    description: str | None = None


def parse_schedules(raw: dict[str, Any], base_dir: Path | None = None) -> list[Schedule]:
    """Validate the ``schedules`` tables of saepress.toml; every mistake is a ConfigError naming the table."""
    if not isinstance(raw, dict):
        raise ConfigError("[saepress.schedules] must be a table of tables, e.g. [saepress.schedules.nightly]")
    schedules = []
    for name, table in raw.items():
        where = f"[saepress.schedules.{name}]"
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"{where}: a schedule name may hold only letters, digits, '-' and '_'")
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table with flow, cron or interval, and parameters")
        unknown = set(table) - SCHEDULE_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(SCHEDULE_KEYS)}")
        flow = table.get("flow")
        if flow not in FLOWS:
            raise ConfigError(f"{where}: flow must be one of {sorted(FLOWS)}, got {flow!r}")
        cron, interval = table.get("cron"), table.get("interval")
        if (cron is None) == (interval is None):
            raise ConfigError(f"{where}: give exactly one of cron = \"0 2 * * *\" or interval = SECONDS")
        if cron is not None and not isinstance(cron, str):
            raise ConfigError(f"{where}: cron must be a string such as \"0 2 * * *\", got {cron!r}")
        if interval is not None and (isinstance(interval, bool) or not isinstance(interval, (int, float))
                                     or interval <= 0):
            raise ConfigError(f"{where}: interval must be a positive number of seconds, got {interval!r}")
        timezone = table.get("timezone")
        if timezone is not None and not _known_timezone(timezone):
            raise ConfigError(f"{where}: timezone must be an IANA name such as \"Europe/Berlin\", got {timezone!r}")
        parameters = table.get("parameters", {})
        if not isinstance(parameters, dict):
            raise ConfigError(f"{where}: parameters must be a table, e.g. parameters = {{source = \"...\"}}")
        schedule = Schedule(
            name=name,
            flow=flow,
            cron=cron,
            interval=float(interval) if interval is not None else None,
            timezone=timezone,
            parameters=_resolve_paths(parameters, base_dir),
            description=table.get("description"),
        )
        _prefect_schedule(schedule)  # validates cron syntax and time zone now rather than at serve time
        schedules.append(schedule)
    return schedules


def check_parameters(schedule: Schedule, flow_fn: Any) -> None:
    """Parameters must match the flow's signature: no unknown names, every required one given."""
    signature = inspect.signature(flow_fn)
    where = f"[saepress.schedules.{schedule.name}]"
    unknown = set(schedule.parameters) - set(signature.parameters)
    if unknown:
        raise ConfigError(f"{where}: {schedule.flow} has no parameter(s) {sorted(unknown)}; "
                          f"it takes {list(signature.parameters)}")
    missing = [p.name for p in signature.parameters.values()
               if p.default is inspect.Parameter.empty and p.name not in schedule.parameters]
    if missing:
        raise ConfigError(f"{where}: parameters must set {missing} for the {schedule.flow} flow")
    if "fidelity" in schedule.parameters:
        try:
            check_fidelity(schedule.parameters["fidelity"])
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def load_flow(key: str) -> Any:
    module, name = FLOWS[key]
    return getattr(importlib.import_module(module), name)


def build_deployments(schedules: list[Schedule]) -> list[Any]:
    """One Prefect RunnerDeployment per schedule, parameters checked against the flow signature."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.types.entrypoint import EntrypointType

    deployments = []
    for schedule in schedules:
        flow = load_flow(schedule.flow)
        check_parameters(schedule, flow.fn)
        deployments.append(flow.to_deployment(
            schedule.name,
            schedules=[_prefect_schedule(schedule)],
            parameters=schedule.parameters,
            description=schedule.description,
            tags=["saepress", schedule.flow],
            # Re-serving resumes schedules that a previous `saepress serve` paused on shutdown.
            paused=False,
            # A run that would overlap the previous run of the same job (a nightly compression still busy at
            # the next night) is cancelled rather than queued: two writers on one output gain nothing.
            concurrency_limit=ConcurrencyLimitConfig(limit=1,
                                                     collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
            # "flows.compress.compress_flow" imports from the installed package whatever the runner's folder.
            entrypoint_type=EntrypointType.MODULE_PATH,
        ))
    return deployments


def server_command(host: str = "127.0.0.1", port: int = SERVE_PORT) -> list[str]:
    """The `prefect server` invocation; deploy/compose.yaml runs the same one (checked by tests)."""
    return ["prefect", "server", "start", "--host", host, "--port", str(port)]


def api_url(host: str, port: int) -> str:
    return f"http://{host}:{port}/api"


def _installed_script(name: str) -> str:
    """``name`` from this interpreter's environment, which need not be on PATH (``.venv/bin/saepress serve``)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def server_healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def local_prefect_server(home: Path, port: int = SERVE_PORT) -> Iterator[str]:
    """A persistent `prefect server` on loopback for as long as the block runs; yields its API URL.

    A Prefect server already answering on the port (one the user started) is used and left running.
    """
    url = api_url("127.0.0.1", port)
    if server_healthy(url):
        print(f"using the Prefect server already running at {url}", flush=True)
        yield url
        return
    prefect_home = home / "prefect"
    prefect_home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_HOME": str(prefect_home)}
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.pop("PREFECT_API_URL", None)
    log_path = prefect_home / "server.log"
    print(f"starting a Prefect server at {url} (database and log in {prefect_home})", flush=True)
    with open(log_path, "ab") as log:
        # Own session: Ctrl-C reaches only `saepress serve`, which must still talk to the server while it
        # pauses its schedules, and then stops the server itself.
        command = server_command("127.0.0.1", port)
        command[0] = _installed_script(command[0])
        process = subprocess.Popen(command, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_healthy(url, process, log_path)
        yield url
    finally:
        _stop(process)


def serve(config: str | None = None, *, port: int = SERVE_PORT, start_server: bool = True) -> int:
    """Register the deployments from saepress.toml and run them on their schedules until stopped."""
    settings = Settings.resolve(config_path=config).prepare()
    base_dir = settings.config_path.parent if settings.config_path else Path.cwd()
    schedules = parse_schedules(settings.schedules, base_dir)
    if not schedules:
        where = settings.config_path or "saepress.toml (none found; give --config or SAEPRESS_CONFIG)"
        raise ConfigError(f"no schedules in {where}; add a table such as [saepress.schedules.nightly] "
                          "with flow = \"compress\", cron = \"0 2 * * *\" and parameters = {source, out}")
    deployments = build_deployments(schedules)

    if settings.prefect_api_url:
        _serve(deployments, settings.prefect_api_url)
    elif start_server:
        with local_prefect_server(settings.home, port) as url:
            _serve(deployments, url)
    else:
        raise ConfigError(
            "PREFECT_API_URL is not set, and Prefect's ephemeral server does not run schedules. Start a server "
            f"with `{' '.join(server_command('127.0.0.1', port))}`, then "
            f"`export PREFECT_API_URL={api_url('127.0.0.1', port)}` (or drop --no-server to let serve start it)")
    return 0


def _serve(deployments: list[Any], url: str) -> None:
    from prefect import serve as prefect_serve
    from prefect.settings import PREFECT_API_URL, temporary_settings

    os.environ["PREFECT_API_URL"] = url  # for the child process of each flow run
    # The runner stops on SIGTERM itself; Ctrl-C arrives as KeyboardInterrupt and is a normal way to stop.
    with temporary_settings({PREFECT_API_URL: url}), contextlib.suppress(KeyboardInterrupt):
        prefect_serve(*deployments)


def _prefect_schedule(schedule: Schedule) -> Any:
    from prefect.schedules import Cron, Interval

    try:
        if schedule.cron is not None:
            return Cron(schedule.cron, timezone=schedule.timezone)
        return Interval(schedule.interval, timezone=schedule.timezone)
    except ValueError as exc:
        raise ConfigError(f"[saepress.schedules.{schedule.name}]: {exc}") from None


def _known_timezone(name: Any) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (TypeError, ValueError, zoneinfo.ZoneInfoNotFoundError):
        return False
    return True


def _resolve_paths(parameters: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
    if base_dir is None:
        return dict(parameters)
    resolved = {}
    for key, value in parameters.items():
        if key in PATH_PARAMETERS and isinstance(value, str) and "://" not in value and value:
            value = str(base_dir / Path(value).expanduser())
        resolved[key] = value
    return resolved


def _wait_healthy(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server_healthy(url):
            return
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise ConfigError(f"the Prefect server exited with code {process.returncode}: {tail[0]} "
                              f"(full log: {log_path}); pass --port to use another port")
        time.sleep(0.5)
    _stop(process)
    raise ConfigError(f"the Prefect server did not answer at {url} within {SERVER_START_TIMEOUT_S} s "
                      f"(log: {log_path})")


def _stop(process: subprocess.Popen, grace_s: float = 20) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

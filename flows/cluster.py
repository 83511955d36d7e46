"""The Dask client's lifetime: a scheduler address when given, otherwise a LocalCluster on this machine."""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
from collections.abc import Iterator

from flows.settings import Settings
from tasks.errors import ConfigError


@contextlib.contextmanager
def dask_client(settings: Settings) -> Iterator["distributed.Client"]:  # noqa: F821
    """Open a client for the job and close it (and any cluster it started) afterwards.

    Tasks reach the client with ``distributed.get_client()``.
    """
    import distributed

    # The scheduler's and nannies' INFO lines would drown the job's own report.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if settings.dask_address:
        try:
            client = distributed.Client(settings.dask_address, timeout="30s")
        except OSError as exc:
            raise ConfigError(
                f"cannot reach the Dask scheduler at {settings.dask_address} ({exc}); "
                "start it with `dask scheduler` or drop --dask-address to use a local cluster"
            ) from None
        with client:
            yield client
        return
    workers = settings.dask_workers or max(1, min(os.cpu_count() or 1, 8))
    # Processes, one thread each: the codec holds the GIL in places, and memory per worker stays bounded.
    # The dashboard (when bokeh is installed) and the scheduler's HTTP endpoints take a free port: the fixed 8787
    # collides with any other cluster on the machine and Dask then warns on every start.
    dashboard = importlib.util.find_spec("bokeh") is not None
    with distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0" if dashboard else None,
        scheduler_kwargs={"dashboard_address": ":0"},
        silence_logs=logging.ERROR,
        local_directory=str(settings.home / "dask-scratch"),
    ) as cluster, distributed.Client(cluster) as client:
        if dashboard:
            print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)
        yield client

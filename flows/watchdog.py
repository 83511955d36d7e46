"""Stop Prefect's temporary server when the command that started it dies without cleaning up.

Without PREFECT_API_URL, Prefect runs a temporary API server as a child process and stops it at interpreter exit.
A driver that is killed (SIGKILL, the OOM killer, a lost container) never gets there, and the server would run
on. So the command starts the server itself and, beside it, a small watchdog process that polls its parent (the
command): once the parent is gone, it stops the server (SIGTERM, then SIGKILL after STOP_SECONDS).

Run as ``python -m flows.watchdog PARENT_PID SERVER_PID SERVER_START_TIME``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

POLL_SECONDS = 0.5
STOP_SECONDS = 5.0


def guard_temporary_server() -> None:
    """Start Prefect's temporary server (when no API URL is set) with a watchdog that outlives this process."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return
    import psutil
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the one instance Prefect's own client uses
    server.start()
    pid = server.server_process.pid
    subprocess.Popen([sys.executable, "-m", "flows.watchdog", str(os.getpid()), str(pid),
                      repr(psutil.Process(pid).create_time())],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _watch(parent: int, server: int, started: float) -> None:
    import psutil

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the command; we stay to clean up after it
    try:
        process = psutil.Process(server)
        if abs(process.create_time() - started) > 1:
            return  # not our server any more (its pid was reused)
        while os.getppid() == parent:
            if not process.is_running():
                return  # the command stopped its server and exited normally
            time.sleep(POLL_SECONDS)
        victims = [process] + process.children(recursive=True)
        for victim in victims:
            victim.terminate()
        _, alive = psutil.wait_procs(victims, timeout=STOP_SECONDS)
        for victim in alive:
            victim.kill()
    except psutil.NoSuchProcess:
        return


if __name__ == "__main__":
    _watch(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))

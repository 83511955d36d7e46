"""One way to run many calls on Dask: submit a bounded window, collect each result as it finishes, release it.

Only a window of calls is in flight at a time (tasks.defaults.WINDOW: a few per worker thread), fed from the
calls as each one completes (``as_completed.add``), so the scheduler, the client and the driver's memory hold a
bounded number of futures and results whatever the archive size; the calls themselves may be a generator that
makes each one only when the window has room, and each future is released as soon as its result is read.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from tasks.defaults import WINDOW
from tasks.progress import meter


def submit_and_collect(fn: Callable[..., Any], calls: Iterable[tuple], description: str,
                       sizes: Iterable[tuple[int, int]], unit: str = "images", keys: Iterable[str] | None = None,
                       errors: str = "raise", retries: int = 2,
                       total: tuple[int, int] | None = None) -> Iterator[tuple[int, Any]]:
    """Run ``fn(*call)`` for each of ``calls`` on the flow's Dask client; yield ``(i, result)`` in completion
    order, ``i`` counting the calls from 0 in the order given.

    ``sizes`` gives each call's ``(units, bytes)`` (bytes 0 when not known), in step with ``calls``: the progress
    bar counts those ``unit`` (images, files) and bytes as calls finish, with the rate and the time left, out of
    ``total`` (the sum of ``sizes``, which must then be a list, when not given). ``keys`` names the Dask tasks.

    ``errors="raise"`` re-raises the first call that failed every retry; ``errors="return"`` yields its exception
    as the result, so one failed call never stops the others.
    """
    import distributed

    if errors not in ("raise", "return"):
        raise ValueError(f"errors must be 'raise' or 'return', not {errors!r}")
    if total is None:
        sizes = list(sizes)
        total = (sum(n for n, _ in sizes), sum(size for _, size in sizes))
    client = distributed.get_client()
    window = max(WINDOW.least, WINDOW.per_thread * sum(client.nthreads().values()))
    waiting = enumerate(zip(calls, sizes, itertools.repeat(None) if keys is None else keys))
    in_flight: dict[str, tuple[int, tuple[int, int]]] = {}
    running = distributed.as_completed()

    def submit() -> None:
        following = next(waiting, None)
        if following is not None:
            i, (call, size, key) = following
            future = client.submit(fn, *call, key=key, retries=retries, pure=False)
            in_flight[future.key] = i, size
            running.add(future)

    for _ in range(window):
        submit()
    with meter(description, *total, unit) as bar:
        for future in running:
            i, size = in_flight.pop(future.key)
            try:
                result = future.result()
            except Exception as exc:
                if errors == "raise":
                    raise
                result = exc
            finally:
                future.release()
            bar.advance(*size)
            submit()
            yield i, result

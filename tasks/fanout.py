"""One way to run many calls on Dask: submit a bounded window, collect each result as it finishes, release it.

Only a window of calls is in flight at a time (a few per worker thread), so the scheduler, the client and the
driver's memory hold a bounded number of futures and results whatever the archive size; each future is released as
soon as its result is read.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tasks.progress import meter

# Calls in flight per worker thread: enough to keep every worker busy while the driver reads a result.
IN_FLIGHT_PER_THREAD = 2
MIN_IN_FLIGHT = 8


def submit_and_collect(fn: Callable[..., Any], calls: Sequence[tuple], description: str,
                       sizes: Sequence[tuple[int, int]], unit: str = "images", keys: Sequence[str] | None = None,
                       errors: str = "raise", retries: int = 2) -> Iterator[tuple[int, Any]]:
    """Run ``fn(*calls[i])`` on the flow's Dask client; yield ``(i, result)`` in completion order.

    ``sizes[i]`` is ``(units, bytes)`` of call i (bytes 0 when not known): the progress bar counts those ``unit``
    (images, files) and bytes as calls finish, with the rate and the time left.

    ``errors="raise"`` re-raises the first call that failed every retry; ``errors="return"`` yields its exception
    as the result, so one failed call never stops the others. ``keys`` names the Dask tasks (one per call).
    """
    import distributed

    if errors not in ("raise", "return"):
        raise ValueError(f"errors must be 'raise' or 'return', not {errors!r}")
    client = distributed.get_client()
    threads = sum(client.nthreads().values())
    window = max(MIN_IN_FLIGHT, IN_FLIGHT_PER_THREAD * threads)
    index_of: dict[str, int] = {}

    def submit(i: int) -> distributed.Future:
        future = client.submit(fn, *calls[i], key=keys[i] if keys else None, retries=retries, pure=False)
        index_of[future.key] = i
        return future

    waiting = iter(range(len(calls)))
    running = distributed.as_completed([submit(i) for _, i in zip(range(window), waiting)])
    with meter(description, sum(n for n, _ in sizes), sum(size for _, size in sizes), unit) as bar:
        for future in running:
            i = index_of.pop(future.key)
            try:
                result = future.result()
            except Exception as exc:
                if errors == "raise":
                    raise
                result = exc
            finally:
                future.release()
            bar.advance(*sizes[i])
            following = next(waiting, None)
            if following is not None:
                running.add(submit(following))
            yield i, result

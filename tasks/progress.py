"""One way to show progress on long work: a rich bar on stderr that counts what a person cares about (images or
files, and their bytes) with the rate and the time left, e.g.
``compress ━━━━━━━  1,234/20,000 images, 1.2/15.3 GB, 45.1 images/s, ETA 0:07:00``; quiet when not a terminal.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator


def _counts_column():
    from rich.filesize import decimal
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Counts(ProgressColumn):
        """Done/total units, done/total bytes (when known) and the rate in units per second."""

        def render(self, task) -> Text:
            unit, total_bytes = task.fields["unit"], task.fields["total_bytes"]
            parts = [f"{int(task.completed):,}/{int(task.total or 0):,} {unit}"]
            if total_bytes:
                parts.append(f"{decimal(task.fields['bytes'])}/{decimal(total_bytes)}")
            speed = task.finished_speed or task.speed
            if speed:
                parts.append(f"{speed:.1f} {unit}/s")
            return Text(", ".join(parts))

    return Counts()


class Meter:
    """The bar of one piece of work; ``advance(units, size)`` as each part of it finishes."""

    def __init__(self, bar, task: int):
        self._bar, self._task = bar, task

    def advance(self, units: int, size: int = 0) -> None:
        fields = self._bar.tasks[self._task].fields
        self._bar.update(self._task, advance=units, bytes=fields["bytes"] + size)


@contextlib.contextmanager
def meter(description: str, total: int, total_bytes: int = 0, unit: str = "images",
          console=None) -> Iterator[Meter]:
    """A bar for ``total`` units (and ``total_bytes`` bytes, 0 when not known) on ``console`` (default: stderr,
    drawn only when it is a terminal)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    console = console or Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), _counts_column(), TextColumn("ETA"),
               TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal, transient=False) as bar:
        task = bar.add_task(description, total=total, unit=unit, bytes=0, total_bytes=total_bytes)
        yield Meter(bar, task)

"""Warnings raised while one file is read or coded (Pillow's "Truncated File Read", palette transparency, EXIF
and size notices): kept with that file's record and in the job's log, never printed on the console.

Python's warning filters are process-wide, so this relies on one item at a time per process (a LocalCluster runs
one thread per worker); two threads reading at once could see each other's warnings.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterable, Iterator

# Every note this module writes starts so: a row's conversions mix warnings with what coding changed.
PREFIX = "warning: "
logger = logging.getLogger("saepress.warnings")


@contextlib.contextmanager
def collected() -> Iterator[list[str]]:
    """Record every warning raised inside the block, none printed; the list holds one line per distinct warning
    (``warning: UserWarning: Truncated File Read``) once the block ends, also when it raises."""
    notes: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield notes
    finally:
        for warning in caught:
            text = str(warning.message).strip().splitlines()
            line = f"{PREFIX}{warning.category.__name__}: {text[0][:200] if text else ''}"
            if line not in notes:
                notes.append(line)


def of(notes: Iterable[str] | None) -> list[str]:
    """The warnings among a record's notes (its conversions, or a catalog row's warnings)."""
    return [note for note in notes or () if note.startswith(PREFIX)]


def log(path: str, notes: Iterable[str]) -> None:
    """Put one file's warnings in the job's log (the console shows only their count)."""
    for note in notes:
        logger.info("%s: %s", path, note)


def summary(files: int, where: str) -> list[str]:
    """The one report line about warnings, or none."""
    return [f"{files} file(s) raised warnings while read or coded: {where}"] if files else []

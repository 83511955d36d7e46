"""The progress bar counts images (or files) and bytes, with the rate and the time left; silent off a terminal."""
from __future__ import annotations

import io
import re
import time

from rich.console import Console

from tasks.progress import meter


def last_line(text: str) -> str:
    """The bar as it was last drawn (without cursor codes)."""
    return re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", text).replace("\r", "\n").strip().splitlines()[-1]


def drawn(terminal: bool, unit: str = "images", total_bytes: int = 15_300_000_000) -> str:
    sink = io.StringIO()
    console = Console(file=sink, force_terminal=terminal, width=160, color_system=None)
    with meter("compress", 20_000, total_bytes, unit=unit, console=console) as bar:
        for _ in range(3):
            time.sleep(0.05)
            bar.advance(500, 380_000_000)
    return sink.getvalue()


def test_the_bar_shows_units_bytes_rate_and_time_left():
    last = last_line(drawn(True))
    assert "1,500/20,000 images" in last and "1.1 GB/15.3 GB" in last
    assert re.search(r"[\d.]+ images/s", last) and re.search(r"ETA +\d+:\d\d:\d\d", last), last


def test_files_without_known_bytes_show_no_byte_counts():
    last = last_line(drawn(True, unit="files", total_bytes=0))
    assert "1,500/20,000 files" in last and "GB" not in last and "files/s" in last


def test_nothing_is_drawn_when_not_a_terminal():
    assert drawn(False) == ""

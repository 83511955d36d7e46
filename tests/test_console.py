"""What a person sees at the terminal: progress and the summary; warnings counted, not printed; flow logs in a file
(and on the console with -v)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hostile import _save, jpeg_with_exif, photo, stored_rows, tiff_block

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# ImageDescription whose 400 bytes lie past the end of the EXIF block: Pillow warns and skips the tag.
WARNING = "Tag data larger than file"


def warning_jpeg(seed: int) -> bytes:
    return jpeg_with_exif(seed, tiff_block([(0x010E, 2, 400, b"x" * 8)]))


def saepress(*args: str) -> subprocess.CompletedProcess:
    """The command line in a child process, on the session's Prefect server and a one-worker cluster."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "SAEPRESS_DASK_WORKERS": "1",
           "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def compressed(tmp_path_factory, prefect_harness):
    folder = tmp_path_factory.mktemp("console") / "src"
    folder.mkdir()
    (folder / "plain.png").write_bytes(_save(photo(1), "PNG"))
    (folder / "warns.jpg").write_bytes(warning_jpeg(2))
    out = folder.parent / "shards"
    return out, saepress("compress", str(folder), "--out", str(out))


def log_of(result: subprocess.CompletedProcess) -> str:
    found = re.search(r"^log: (.+)$", result.stdout, re.M)
    assert found, result.stdout
    return Path(found.group(1)).read_text()


def test_a_pillow_warning_is_noted_in_the_items_row_and_counted_not_printed(compressed):
    out, result = compressed
    assert result.returncode == 0, result.stderr
    assert WARNING not in result.stderr and "UserWarning" not in result.stderr
    rows = stored_rows(out)
    assert any(WARNING in note for note in rows["warns.jpg"]["conversions"])
    assert not any(note.startswith("warning:") for note in rows["plain.png"]["conversions"])
    assert "1 file(s) raised warnings" in result.stdout
    catalog = {row["path"]: row for row in pq.read_table(out / "catalog.parquet").to_pylist()}
    assert any(WARNING in note for note in catalog["warns.jpg"]["warnings"])
    assert catalog["plain.png"]["warnings"] is None


def test_the_console_shows_no_flow_logs_and_the_log_file_has_them(compressed):
    _, result = compressed
    assert "| INFO" not in result.stderr and "INFO mlflow" not in result.stderr, result.stderr
    log = log_of(result)
    assert "Flow run" in log and "Finished in state Completed" in log
    assert f"warns.jpg: warning: UserWarning: {WARNING}" in log


def test_verbose_shows_the_flow_logs_on_the_console(compressed, tmp_path):
    out, _ = compressed
    result = saepress("ingest", str(out.parent / "src"), "--out", str(tmp_path), "-v")
    assert result.returncode == 0, result.stderr
    assert "| INFO" in result.stderr and "Finished in state Completed" in result.stderr
    assert "Finished in state Completed" in log_of(result)

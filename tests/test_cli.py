"""The command line as a user meets it: help texts, usage errors, exit codes."""
from __future__ import annotations

import subprocess
import sys

import pytest

from flows.cli import build_parser, main

COMMANDS = ["ingest", "extract", "train", "compress", "decompress", "get", "verify", "compact", "report", "evaluate", "run", "serve"]


def saepress(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=120)


def test_top_level_help_lists_every_command():
    result = saepress("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout
    assert "exit codes" in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: saepress {command}")
    # A sentence of explanation beyond the one-line summary.
    assert len(out.split("\n\n")[1]) > 20


@pytest.mark.parametrize("argv, message", [
    (["compress"], "the following arguments are required"),
    (["compress", "x", "--out", "y", "--quality", "50", "--target-bpp", "1"], "not allowed with"),
    (["verify", "shards", "--bogus"], "unrecognized arguments"),
    (["nonsense"], "invalid choice"),
])
def test_usage_errors_exit_2_with_one_line(argv, message):
    result = saepress(*argv)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


@pytest.mark.parametrize("argv", [
    ["ingest", "/nonexistent/archive", "--out", "/tmp/x"],
    ["verify", "/nonexistent/shards"],
    ["get", "/nonexistent/shards", "abc", "--out", "/tmp/x.png"],
    ["extract", "/nonexistent/workdir"],
])
def test_missing_input_is_a_usage_error_without_traceback(argv):
    result = saepress(*argv)
    assert result.returncode == 2
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_does_not_import_heavy_libraries():
    code = ("import sys; from flows.cli import build_parser; build_parser().format_help(); "
            "print(sorted(m for m in ('torch', 'prefect', 'dask', 'mlflow') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]"


def test_parser_maps_rate_flags():
    args = build_parser().parse_args(["compress", "src", "--out", "dst", "--target-psnr", "38"])
    assert (args.quality, args.target_bpp, args.target_psnr) == (None, None, 38.0)


@pytest.mark.parametrize("argv", [["-v", "compress", "s", "--out", "o"], ["compress", "s", "--out", "o", "-v"]])
def test_verbose_is_accepted_before_or_after_the_command_and_documented(argv):
    assert build_parser().parse_args(argv).verbose is True
    assert build_parser().parse_args(["compress", "s", "--out", "o"]).verbose is False
    assert "-v, --verbose" in saepress("compress", "--help").stdout

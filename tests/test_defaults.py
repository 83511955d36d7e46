"""One source per default: the flows, the CLI's --help and the codec library agree on each option's default."""
from __future__ import annotations

import inspect

import pytest

import sae_model.codec
from flows.cli import build_parser
from tasks import defaults


def test_ingest_rejects_above_the_pixel_count_the_decoder_refuses():
    assert defaults.INGEST.max_pixels == sae_model.codec.DEFAULT_MAX_PIXELS


def test_compress_default_quality_is_the_codecs():
    assert defaults.QUALITY == sae_model.codec.DEFAULT_QUALITY


def help_of(command: str) -> str:
    parser = build_parser()
    return next(a for a in parser._subparsers._group_actions).choices[command].format_help()


@pytest.mark.parametrize("command, shown", [
    ("ingest", f"default: {defaults.INGEST.max_pixels}"),
    ("extract", f"default: {defaults.EXTRACT.patches_per_image}"),
    ("extract", f"default: {defaults.EXTRACT.val_fraction}"),
    ("compress", f"default: {defaults.QUALITY:g}"),
    ("compress", f"default: {defaults.SHARDS.max_items}"),
    ("compress", f"(default: {defaults.FIDELITY})"),
    ("compress", f"default: {defaults.SHARDS.max_bytes // 2**20}"),
    ("train", f"default: {defaults.MODEL_NAME}"),
    ("serve", f"default: {defaults.SERVE_PORT}"),
])
def test_help_shows_each_default_from_tasks_defaults(command, shown):
    assert shown in " ".join(help_of(command).split())


@pytest.mark.parametrize("flow, parameter, default", [
    ("flows.extract:extract_flow", "patches_per_image", defaults.EXTRACT.patches_per_image),
    ("flows.extract:extract_flow", "val_fraction", defaults.EXTRACT.val_fraction),
    ("flows.compress:compress_flow", "shard_max_items", defaults.SHARDS.max_items),
    ("flows.compress:compress_flow", "fidelity", defaults.FIDELITY),
    ("flows.compress:compress_flow", "shard_max_bytes", defaults.SHARDS.max_bytes),
    ("flows.run:run_flow", "quality", defaults.QUALITY),
    ("flows.serve:serve", "port", defaults.SERVE_PORT),
])
def test_flow_signatures_take_their_defaults_from_tasks_defaults(flow, parameter, default):
    import importlib

    module, name = flow.split(":")
    function = getattr(importlib.import_module(module), name)
    function = getattr(function, "fn", function)
    assert inspect.signature(function).parameters[parameter].default == default

"""The ``saepress`` command line: one subcommand per user job.

Heavy libraries (torch, prefect, dask, mlflow) are imported only inside the command that needs them, so
``saepress --help`` answers at once. Exit codes: 0 success; 1 the job finished but found problems (each is
listed); 2 usage or configuration error (one line on stderr saying what to do).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks import defaults
from tasks.exact import FIDELITIES

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2

DESCRIPTION = """\
saepress compresses whole image archives with a learned sparse-autoencoder codec.

The pipeline: ingest (catalog an archive) -> extract (sample training patches) -> train (a codec model,
tracked and registered in MLflow) -> compress (self-contained shards) -> decompress / get / verify.
`saepress run` does all of it on one machine; `saepress serve` schedules the jobs with Prefect.

With nothing configured everything is embedded: Prefect's ephemeral server, a Dask LocalCluster and MLflow
on a SQLite file under $SAEPRESS_HOME. Point at real servers with PREFECT_API_URL, --dask-address
(SAEPRESS_DASK_ADDRESS) and MLFLOW_TRACKING_URI, or put the settings in saepress.toml.
"""

EPILOG = """\
console: progress and the final summary; -v/--verbose also shows the flow logs (Prefect's INFO lines, each
file's warnings), which always go to $SAEPRESS_HOME/logs/COMMAND-TIME-PID.log (its path ends the summary).
exit codes: 0 success, 1 finished with problems (listed), 2 usage or configuration error.
Run `saepress COMMAND --help` for each command's options."""


class UsageError(Exception):
    """Bad command-line input detected before any job starts."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one clear line instead of argparse's usage dump
        self.exit(EXIT_USAGE, f"saepress: error: {message} (see `{self.prog} --help`)\n")


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="saepress", description=DESCRIPTION, epilog=EPILOG, formatter_class=_formatter)
    parser.add_argument("--version", action="version", version=f"saepress {_version()}")
    parser.add_argument("--config", metavar="TOML", help="settings file (default: ./saepress.toml, or $SAEPRESS_CONFIG)")
    verbose_help = "also show the flow logs on the console (they always go to the log file)"
    parser.add_argument("-v", "--verbose", action="store_true", help=verbose_help)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def command(name: str, summary: str, details: str, handler: Callable[[argparse.Namespace], int]):
        p = sub.add_parser(name, help=summary, description=f"{summary}\n\n{details}", formatter_class=_formatter)
        p.set_defaults(handler=handler)
        # SUPPRESS: a -v given before the command (`saepress -v compress`) is not reset by the command default
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose_help)
        return p

    def dask_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dask-address", metavar="ADDR",
                       help="Dask scheduler, e.g. tcp://host:8786 (env SAEPRESS_DASK_ADDRESS; default: a local cluster)")

    def max_pixels_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--max-pixels", type=_positive_int, default=defaults.INGEST.max_pixels, metavar="N",
                       help="refuse to decode an image whose header declares more than N pixels, before allocating "
                            "(bounds a worker's memory at ~4 bytes/pixel; default: %(default)s, what ingest admits)")

    def start_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--start", choices=defaults.TRAIN_STARTS, default=defaults.TRAIN_START,
                       help="warm: from the shipped default model; cold: from the data; auto (default): warm "
                            f"below {defaults.WARM_BELOW_ROWS:,} training patches, else cold")

    p = command("ingest", "catalog an image archive into WORKDIR/catalog.parquet",
                "SOURCE is a folder (recursive), a glob, a .tar/.tar.gz/.zip archive or an fsspec URL\n"
                "(s3://bucket/prefix, memory://..., file://...). Every file gets a row: ok, duplicate, or rejected\n"
                "with its reason. Re-running on a grown source adds only the new files. A WORKDIR on an fsspec\n"
                "URL needs no disk shared with the Dask workers: extract, train and compress read it there.", _ingest)
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("--out", required=True, metavar="WORKDIR",
                   help="folder or fsspec URL (s3://bucket/work/archive) for catalog.parquet")
    p.add_argument("--max-pixels", type=int, default=defaults.INGEST.max_pixels, metavar="N",
                   help="reject images above N pixels (decompression bombs; default: %(default)s)")
    dask_option(p)

    p = command("extract", "sample training patches from the catalog into WORKDIR/patches",
                "Dask workers read each `ok` image, sample patches in the codec's colour space and write Parquet\n"
                "part files atomically. The train/validation split is by image.", _extract)
    p.add_argument("workdir", metavar="WORKDIR")
    p.add_argument("--patches-per-image", type=int, default=defaults.EXTRACT.patches_per_image, metavar="N",
                   help="default: %(default)s")
    p.add_argument("--val-fraction", type=float, default=defaults.EXTRACT.val_fraction, metavar="F",
                   help="share of images held out for validation (default: %(default)s)")
    p.add_argument("--seed", type=int, default=defaults.EXTRACT.seed, help="default: %(default)s")
    dask_option(p)

    p = command("train", "train a codec model on WORKDIR/patches and register it in MLflow",
                "Trains on the GPU when there is one, otherwise on all CPU cores; logs params, metrics, plots\n"
                "and the model to MLflow, registers a new version with alias `candidate`, and moves `champion`\n"
                "to it only if its BD-rate beats both the current champion's and the shipped default's on the\n"
                f"same validation images, and only with enough of them ({defaults.MIN_VAL_IMAGES} images and "
                f"{defaults.MIN_VAL_PIXELS:,} pixels).", _train)
    p.add_argument("workdir", metavar="WORKDIR")
    p.add_argument("--steps", type=int, metavar="N", help="training steps (default: the model's default)")
    p.add_argument("--seed", type=int, default=defaults.TRAIN_SEED, help="default: %(default)s")
    p.add_argument("--model-name", metavar="NAME",
                   help=f"registered model name (default: {defaults.MODEL_NAME}, or SAEPRESS_MODEL_NAME)")
    p.add_argument("--promote", action="store_true", help="make the new version `champion` unconditionally")
    p.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted training run from its checkpoint")
    start_option(p)

    p = command("compress", "compress an archive into self-contained sparse-code shards",
                "SOURCE is anything `ingest` accepts, or a WORKDIR that already has catalog.parquet. The model\n"
                "is --model (a models:/ URI or a local folder), else the registered champion, else the default\n"
                "model shipped with saepress; it is copied into SHARDDIR/models/ so the shards decode without the\n"
                "registry. Files that are not images are stored verbatim unless --skip-rejected.\n"
                "--fidelity picks what comes back: lossy (default) codes every image with the model;\n"
                "jpeg-exact also gives every JPEG back byte for byte (recompressed by JPEG XL's lossless\n"
                "transcoding, ~10-20%% smaller); lossless gives JPEGs back byte for byte and every other image\n"
                "pixel for pixel (all channels, palettes, 16-bit samples; as PNG). A file that cannot come back\n"
                "exactly at the chosen level is stored verbatim, with the reason.", _compress)
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("--out", required=True, metavar="SHARDDIR", help="output folder or fsspec URL")
    p.add_argument("--model", metavar="URI_OR_PATH",
                   help="e.g. models:/saepress-codec@champion, ./my-model, or sae_model:pretrained (the shipped one)")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--quality", type=float, metavar="Q",
                      help=f"0-100, higher is better; about the PSNR of JPEG at the same quality, in fewer bytes "
                           f"(default: {defaults.QUALITY:g})")
    rate.add_argument("--target-bpp", type=float, metavar="B", help="search the quality per image for B bits/pixel")
    rate.add_argument("--target-psnr", type=float, metavar="P", help="search the quality per image for P dB")
    p.add_argument("--skip-rejected", action="store_true", help="list files that are not images instead of storing them")
    p.add_argument("--fidelity", choices=FIDELITIES, default=defaults.FIDELITY,
                   help="lossy, jpeg-exact or lossless (default: %(default)s)")
    p.add_argument("--shard-max-items", type=int, default=defaults.SHARDS.max_items, metavar="N",
                   help="default: %(default)s")
    p.add_argument("--shard-max-mb", type=int, default=defaults.SHARDS.max_bytes // 2**20, metavar="MB",
                   help="default: %(default)s")
    dask_option(p)

    p = command("decompress", "write every file of a shard set back to DIR",
                "Coded images come back as PNG under their original relative paths; stored files come back\n"
                "byte-identical. Uses only SHARDDIR (its manifest, shards and models/), never the registry.",
                _decompress)
    p.add_argument("sharddir", metavar="SHARDDIR")
    p.add_argument("--out", required=True, metavar="DIR")
    max_pixels_option(p)
    dask_option(p)

    p = command("get", "write one image back, by image id (sha256) or original path",
                "Reads only the shard that holds the image.", _get)
    p.add_argument("sharddir", metavar="SHARDDIR")
    p.add_argument("image", metavar="IMAGE", help="image id (full or unique prefix) or original path")
    p.add_argument("--out", required=True, metavar="FILE")
    max_pixels_option(p)

    p = command("verify", "check a shard set: manifest, checksums, bitstreams",
                "Reports missing, extra, corrupt and duplicated items; exit code 1 if there are any.\n"
                "--decode also decodes every image with the stored model.", _verify)
    p.add_argument("sharddir", metavar="SHARDDIR")
    p.add_argument("--decode", action="store_true", help="decode every item, not just check CRCs")

    p = command("compact", "merge a shard set's index parts into two sorted files",
                "Every compress job does this at its end; run it on a set whose job stopped before (an index of\n"
                "many parts makes get and the next job read every part). Takes the writer's lock; keeps every\n"
                "row (a later row for the same path still wins) and commits one new generation.", _compact)
    p.add_argument("sharddir", metavar="SHARDDIR")

    p = command("report", "rebuild SHARDDIR/report.html, the shard set's page for people",
                "One self-contained HTML page: where every file went, bytes saved, bpp and PSNR histograms and the\n"
                "lowest-PSNR images as original/decoded thumbnails. Every compress job writes it too.", _report_page)
    p.add_argument("sharddir", metavar="SHARDDIR")

    p = command("evaluate", "rate-distortion of saepress vs JPEG, WebP, JPEG 2000 and AVIF on a folder",
                "Measures real bytes and RGB PSNR at several qualities, prints a BD-rate table vs JPEG and\n"
                "writes rd.json and rd.png to --out. Every codec codes the pixels only (ICC profiles and\n"
                "other metadata are left out of every file), so the bytes compare like with like.", _evaluate)
    p.add_argument("images", metavar="IMAGES_DIR")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--model", metavar="URI_OR_PATH", help="default: the model shipped with saepress")

    p = command("run", "the whole pipeline: ingest, extract, train, compress, verify",
                "Without SOURCE it uses a few sample images shipped with saepress. Everything lands in WORKDIR:\n"
                "catalog.parquet, patches/, shards/; the model is tracked and registered in MLflow. The shards\n"
                "are coded with the best of the new model (if promoted), the champion and the shipped default on\n"
                "the validation images; a table of them ends the output. --model skips training.", _run)
    p.add_argument("source", nargs="?", metavar="SOURCE")
    p.add_argument("--out", required=True, metavar="WORKDIR")
    p.add_argument("--model", metavar="URI_OR_PATH", help="skip training and use this model")
    p.add_argument("--steps", type=int, metavar="N", help="training steps (default: the model's default)")
    start_option(p)
    p.add_argument("--quality", type=float, default=defaults.QUALITY, metavar="Q", help="default: %(default)g")
    dask_option(p)

    p = command("serve", "serve Prefect deployments of ingest, train and compress on their schedules",
                "Schedules come from [saepress.schedules.NAME] tables in saepress.toml (cron or interval,\n"
                "flow parameters). Without PREFECT_API_URL a local `prefect server` is started so schedules fire.\n"
                "Runs until interrupted (Ctrl-C).", _serve)
    p.add_argument("--port", type=int, default=defaults.SERVE_PORT,
                   help="port of the local Prefect server it starts (default: %(default)s)")
    p.add_argument("--no-server", action="store_true",
                   help="start no Prefect server; requires PREFECT_API_URL (prints how to start one otherwise)")
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("saepress")
    except PackageNotFoundError:
        return "unknown"


def _existing_local(path: str, what: str) -> str:
    """Fail early, before any server starts, on a local path that is not there."""
    if "://" not in path and not any(ch in path for ch in "*?[") and not Path(path).exists():
        raise UsageError(f"{what} {path!r} does not exist")
    return path


def _prefect(command: str, flow: str) -> tuple[Path, Callable[..., dict[str, Any]]]:
    """Log the flows to a file, and start Prefect's temporary server (if no server is configured) guarded against
    this process being killed; the log file's path and the flow ``module:name``, imported while the server starts
    (both take seconds, the one waiting on a child process)."""
    import importlib
    from concurrent.futures import ThreadPoolExecutor

    from flows.console import log_to_file
    from flows.settings import Settings
    from flows.watchdog import guard_temporary_server

    log = log_to_file(Settings.resolve().home / "logs", command)
    with ThreadPoolExecutor(1) as pool:
        server = pool.submit(guard_temporary_server)
        module, name = flow.split(":")
        job = getattr(importlib.import_module(module), name)
        server.result()
    return log, job


def _report(result: dict[str, Any], log: Path | None = None) -> int:
    for line in result.get("report", []):
        print(line)
    if log is not None:
        print(f"log: {log}")
    problems = result.get("problems", [])
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    return EXIT_PROBLEMS if problems else EXIT_OK


def _ingest(args: argparse.Namespace) -> int:
    source = _existing_local(args.source, "source")
    log, ingest_flow = _prefect(args.command, "flows.ingest:ingest_flow")

    return _report(ingest_flow(source=source, out=args.out,
                               max_pixels=args.max_pixels, dask_address=args.dask_address), log)


def _extract(args: argparse.Namespace) -> int:
    _existing_local(os.path.join(args.workdir, "catalog.parquet"), "catalog (run `saepress ingest` first):")
    log, extract_flow = _prefect(args.command, "flows.extract:extract_flow")

    return _report(extract_flow(workdir=args.workdir, patches_per_image=args.patches_per_image,
                                val_fraction=args.val_fraction, seed=args.seed, dask_address=args.dask_address), log)


def _train(args: argparse.Namespace) -> int:
    _existing_local(os.path.join(args.workdir, "patches"), "patch dataset (run `saepress extract` first):")
    log, train_flow = _prefect(args.command, "flows.train:train_flow")

    return _report(train_flow(workdir=args.workdir, steps=args.steps, seed=args.seed, model_name=args.model_name,
                              promote=args.promote, resume=args.resume, start=args.start), log)


def _compress(args: argparse.Namespace) -> int:
    source = _existing_local(args.source, "source")
    log, compress_flow = _prefect(args.command, "flows.compress:compress_flow")

    return _report(compress_flow(source=source, out=args.out, model=args.model,
                                 quality=args.quality, target_bpp=args.target_bpp, target_psnr=args.target_psnr,
                                 skip_rejected=args.skip_rejected, fidelity=args.fidelity,
                                 shard_max_items=args.shard_max_items,
                                 shard_max_bytes=args.shard_max_mb * 2**20, dask_address=args.dask_address), log)


def _decompress(args: argparse.Namespace) -> int:
    sharddir = _existing_local(args.sharddir, "shard folder")
    log, decompress_flow = _prefect(args.command, "flows.compress:decompress_flow")

    return _report(decompress_flow(sharddir=sharddir, out=args.out, max_pixels=args.max_pixels,
                                   dask_address=args.dask_address), log)


def _get(args: argparse.Namespace) -> int:
    from flows.access import get_image

    return _report(get_image(sharddir=_existing_local(args.sharddir, "shard folder"), image=args.image, out=args.out,
                             max_pixels=args.max_pixels))


def _verify(args: argparse.Namespace) -> int:
    from flows.access import verify

    return _report(verify(sharddir=_existing_local(args.sharddir, "shard folder"), decode=args.decode))


def _compact(args: argparse.Namespace) -> int:
    from flows.access import compact

    return _report(compact(sharddir=_existing_local(args.sharddir, "shard folder")))


def _report_page(args: argparse.Namespace) -> int:
    from flows.report import report

    return _report(report(sharddir=_existing_local(args.sharddir, "shard folder")))


def _evaluate(args: argparse.Namespace) -> int:
    from flows.evaluate import evaluate

    return _report(evaluate(images_dir=_existing_local(args.images, "images folder"), out=args.out, model=args.model))


def _run(args: argparse.Namespace) -> int:

    source = _existing_local(args.source, "source") if args.source else None
    log, run_flow = _prefect(args.command, "flows.run:run_flow")
    return _report(run_flow(source=source, out=args.out, model=args.model, steps=args.steps, quality=args.quality,
                            dask_address=args.dask_address, start=args.start), log)


def _serve(args: argparse.Namespace) -> int:
    from flows.serve import serve

    return serve(config=args.config, port=args.port, start_server=not args.no_server)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from flows.console import quiet

    quiet(args.verbose)
    if args.config:
        os.environ["SAEPRESS_CONFIG"] = str(Path(args.config).resolve())
    from tasks.errors import ConfigError

    try:
        return args.handler(args)
    except (UsageError, ConfigError) as exc:
        print(f"saepress {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"saepress {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Training: the seeded patch stream, validation images, the champion rule, and `train_flow` end to end on SQLite.

The workdirs follow docs/interfaces.md: a catalog.parquet written here with pyarrow, and part files written by the
real extractor (tasks.patches.extract_batch, called without Dask) from crops of the sample images.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fixtures_archives import document_page

from tasks import patch_stream, registry, tracking, training, validation

SAMPLE_IMAGES = Path(__file__).resolve().parents[1] / "flows" / "sample_data"
REPO = Path(__file__).resolve().parents[1]
# Small enough for a few hundred steps in seconds on a shared CPU, big enough to exercise windows and epochs.
TINY_MODEL = {"batch_size": 64, "K": 2}
# The promotion rule at the tests' scale: 2 validation crops of 96 px are enough to decide here.
TINY_LOOP = training.LoopConfig(checkpoint_every=100, evaluations=2, log_every=25, val_images=2, val_crop=96,
                                qualities=(20, 35, 50, 65, 80), min_val_images=2, min_val_pixels=2 * 96 * 96,
                                init_samples=1024, window_rows=700)


# --------------------------------------------------------------------------------------------- workdir builders
def make_archive(folder: Path, count: int, size: int = 128, seed: int = 0, content: str = "photos") -> list[Path]:
    """``count`` PNG crops of the sample photographs (real content, so training has something to learn), or
    generated page scans (``content="documents"``: far from what the shipped default was trained on)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sources = [Image.open(p).convert("RGB") for p in sorted(SAMPLE_IMAGES.glob("*.png"))]
    paths = []
    for i in range(count):
        if content == "documents":
            crop = document_page(rng, size)
        else:
            image = sources[i % len(sources)]
            x, y = (int(rng.integers(0, d - size)) for d in image.size)
            crop = image.crop((x, y, x + size, y + size))
        path = folder / f"img_{i:02d}.png"
        crop.save(path)
        paths.append(path)
    return paths


def write_catalog(workdir: Path, source: Path, paths: list[Path], extra_rows: list[dict] = ()) -> Path:
    rows = []
    for path in paths:
        data = path.read_bytes()
        rows.append({"id": hashlib.sha256(data).hexdigest(), "path": path.name, "size": len(data), "status": "ok",
                     "duplicate_of": None, "format": "PNG", "mode": "RGB", "width": 128, "height": 128,
                     "frames": 1, "animated": False, "orientation": 1, "error": None, "reason": None})
    for extra in extra_rows:
        rows.append({**rows[0], **extra})
    schema = pa.schema([("id", pa.string()), ("path", pa.string()), ("size", pa.int64()), ("status", pa.string()),
                        ("duplicate_of", pa.string()), ("format", pa.string()), ("mode", pa.string()),
                        ("width", pa.int32()), ("height", pa.int32()), ("frames", pa.int32()),
                        ("animated", pa.bool_()), ("orientation", pa.int8()), ("error", pa.string()),
                        ("reason", pa.string())],
                       metadata={"saepress.catalog_version": "1", "saepress.source": str(source)})
    workdir.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), workdir / "catalog.parquet")
    return workdir / "catalog.parquet"


def write_patches(workdir: Path, images: list[tuple[str, str, np.ndarray]], spec: dict, files: int,
                  row_group_size: int) -> None:
    """images: (image_id, split, patches) -> part files, images dealt round-robin over the files."""
    metadata = {"saepress.patch_spec": json.dumps(spec), "saepress.seed": "0", "saepress.catalog_sha256": "0" * 64}
    (workdir / "patches").mkdir(parents=True, exist_ok=True)
    for f in range(files):
        mine = images[f::files]
        ids = [image_id for image_id, _, p in mine for _ in range(len(p))]
        splits = [split for _, split, p in mine for _ in range(len(p))]
        flat = np.concatenate([p for _, _, p in mine]).astype(np.float32)
        patch = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel(), pa.float32()), spec["dim"])
        table = pa.table({"image_id": ids, "split": splits, "patch": patch}).replace_schema_metadata(metadata)
        pq.write_table(table, workdir / "patches" / f"part-{f:05d}.parquet", row_group_size=row_group_size)


def make_workdir(root: Path, images: int = 6, val: int = 2, per_image: int = 400, content: str = "photos") -> Path:
    """A workdir as ingest + extract leave it: a contract catalog, and part files written by the real extractor."""
    from sae_model import PATCH_SPEC
    from tasks.patches import extract_batch, patch_metadata
    from tasks.store import sha256

    paths = make_archive(root / "archive", images, content=content)
    workdir = root / "work"
    catalog = write_catalog(workdir, root / "archive", paths)
    metadata = patch_metadata(PATCH_SPEC, 0, sha256(str(catalog)), per_image)
    items = [(hashlib.sha256(p.read_bytes()).hexdigest(), p.name, "val" if i >= images - val else "train")
             for i, p in enumerate(paths)]
    (workdir / "patches").mkdir()
    for part in range(2):  # two part files, images dealt alternately, as two Dask tasks would write them
        extract_batch(str(root / "archive"), items[part::2], str(workdir / "patches" / f"part-{part:05d}.parquet"),
                      per_image, 0, metadata, 10**8)
    return workdir


@pytest.fixture
def tiny_training(monkeypatch):
    """Make the flows train the tiny configuration (the flow's signature has no model knobs, by contract)."""
    monkeypatch.setattr(training, "training_config",
                        functools.partial(training.training_config, loop=TINY_LOOP, **TINY_MODEL))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------- patch stream
def numbered_workdir(root: Path, files: int, rows_per_image: int, row_group_size: int) -> Path:
    """Patches whose first value is their own serial number, so the tests can see the order."""
    spec = {"dim": 4}
    entries, serial = [], 0
    for i in range(files * 3):
        patches = np.zeros((rows_per_image, 4), np.float32)
        patches[:, 0] = np.arange(serial, serial + rows_per_image)
        serial += rows_per_image
        entries.append((f"image{i}", "val" if i % 4 == 3 else "train", patches))
    write_patches(root, entries, spec, files=files, row_group_size=row_group_size)
    return root


@pytest.mark.parametrize("window_rows", [1, 64, 10**6])
@pytest.mark.parametrize("start_step", [1, 7, 40])
def test_stream_resumes_at_any_step(tmp_path, window_rows, start_step):
    workdir = numbered_workdir(tmp_path, files=3, rows_per_image=50, row_group_size=32)
    dataset = patch_stream.describe_patches(str(workdir))
    stream = patch_stream.PatchStream(dataset["chunks"], dim=4, seed=3, window_rows=window_rows)
    from_zero = [b[:, 0] for _, b in zip(range(start_step + 5), stream.batches(16, 0))]
    resumed = [b[:, 0] for _, b in zip(range(5), stream.batches(16, start_step))]
    assert np.array_equal(np.concatenate(from_zero[start_step:]), np.concatenate(resumed))


@pytest.mark.parametrize("window_rows", [1, 64, 10**6])
def test_stream_epoch_is_a_shuffle_of_all_training_rows(tmp_path, window_rows):
    workdir = numbered_workdir(tmp_path, files=3, rows_per_image=50, row_group_size=32)
    dataset = patch_stream.describe_patches(str(workdir))
    train_serials = {s for i in range(9) if i % 4 != 3 for s in range(i * 50, i * 50 + 50)}
    assert dataset["train_rows"] == len(train_serials) == 350
    stream = patch_stream.PatchStream(dataset["chunks"], dim=4, seed=0, window_rows=window_rows)
    epoch = np.concatenate([b[:, 0] for _, b in zip(range(350 // 25), stream.batches(25))]).astype(int)
    assert sorted(epoch) == sorted(train_serials)
    assert not np.array_equal(epoch, np.sort(epoch))
    if window_rows > 350:  # one window: the first rows come from every part file, not from one file at a time
        files_of_first_rows = {(s // 50) % 3 for s in epoch[:30]}
        assert files_of_first_rows == {0, 1, 2}


def test_stream_order_depends_on_seed(tmp_path):
    workdir = numbered_workdir(tmp_path, files=2, rows_per_image=40, row_group_size=40)
    chunks = patch_stream.describe_patches(str(workdir))["chunks"]
    first = [next(patch_stream.PatchStream(chunks, 4, seed, 64).batches(32))[:, 0] for seed in (0, 0, 1)]
    assert np.array_equal(first[0], first[1]) and not np.array_equal(first[0], first[2])


def test_describe_patches_metadata_and_hash(tmp_path):
    workdir = numbered_workdir(tmp_path, files=2, rows_per_image=40, row_group_size=25)
    dataset = patch_stream.describe_patches(str(workdir))
    assert dataset["patch_spec"] == {"dim": 4}
    assert dataset["val_image_ids"] == ["image3"]
    assert sum(c["rows"] for c in dataset["chunks"]) == dataset["train_rows"] == 200
    assert {name: f["rows"] for name, f in dataset["files"].items()} == {"part-00000.parquet": 120,
                                                                         "part-00001.parquet": 120}
    assert patch_stream.describe_patches(str(workdir))["data_hash"] == dataset["data_hash"]
    numbered_workdir(tmp_path, files=2, rows_per_image=41, row_group_size=25)
    assert patch_stream.describe_patches(str(workdir))["data_hash"] != dataset["data_hash"]


def test_a_workdir_on_an_object_store_url_is_written_whole_indexed_and_streamed_like_a_local_one(tmp_path):
    """memory:// is an fsspec object store in this process: parts are PUT whole, listed, indexed and streamed there
    as on a local disk (the loopback test in test_deploy_dask_s3 does the same on S3 with Dask workers)."""
    import fsspec

    from sae_model import PATCH_SPEC
    from tasks import patches, store

    local = make_workdir(tmp_path, images=4, val=1, per_image=40)
    remote = "memory://saepress-training-test/work"
    fs = fsspec.filesystem("memory")
    fs.pipe_file(f"{remote}/catalog.parquet", (local / "catalog.parquet").read_bytes())
    metadata = pq.read_schema(local / "patches" / "part-00000.parquet").metadata
    items = [(row["id"], row["path"], "val" if index >= 3 else "train")
             for index, row in enumerate(pq.read_table(local / "catalog.parquet").to_pylist())]
    for part in range(2):  # as make_workdir wrote them locally
        result = patches.extract_batch(str(tmp_path / "archive"), items[part::2],
                                       f"{remote}/patches/part-{part:05d}.parquet", 40, 0,
                                       {k.decode(): v.decode() for k, v in metadata.items()
                                        if k.startswith(b"saepress.")}, 10**8)
        assert result["part"] == f"part-{part:05d}.parquet"
    assert not [name for name in store.list_names(f"{remote}/patches") if name.endswith(".tmp")]

    there, here = patch_stream.describe_patches(remote), patch_stream.describe_patches(str(local))
    assert there["data_hash"] == here["data_hash"] and there["files"] == here["files"]
    assert {c["path"] for c in there["chunks"]} == {f"{remote}/patches/part-0000{i}.parquet" for i in range(2)}
    streams = [patch_stream.PatchStream(d["chunks"], PATCH_SPEC["dim"], 0, 64) for d in (there, here)]
    assert np.array_equal(*(s.head(100) for s in streams))
    assert validation.fetch_validation_images(remote, here["val_image_ids"], 1) == \
        validation.fetch_validation_images(str(local), here["val_image_ids"], 1)

    # A later extraction with fewer parts deletes the parts (and temp files) it did not write, on the store too.
    fs.pipe_file(f"{remote}/patches/.crashed.tmp", b"half")
    assert patches.remove_stale_parts(f"{remote}/patches", {"part-00000.parquet"}) == 2
    assert [c["path"] for c in patch_stream.describe_patches(remote)["chunks"]] == [
        f"{remote}/patches/part-00000.parquet"]


@pytest.mark.parametrize("steps, evaluations, expected", [
    (300, 2, [150, 300]), (10, 4, [3, 5, 8, 10]), (3, 4, [1, 2, 3]), (7, 1, [7]),
])
def test_evaluation_steps(steps, evaluations, expected):
    assert training.LoopConfig(evaluations=evaluations).evaluation_steps(steps) == expected


# --------------------------------------------------------------------------------------------- validation images
@pytest.mark.parametrize("count, crop", [(1, 64), (2, None), (5, 100)])
def test_validation_images_come_from_catalog_ok_rows(tmp_path, count, crop):
    paths = make_archive(tmp_path / "archive", 4)
    ids = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    # A duplicate of a validation image and a rejected row must never be read back.
    write_catalog(tmp_path / "work", tmp_path / "archive", paths, extra_rows=[
        {"id": ids[2], "path": "zz_duplicate.png", "status": "duplicate", "duplicate_of": paths[2].name},
        {"id": ids[3], "path": "missing.png", "status": "rejected", "error": "corrupt"}])
    files = validation.fetch_validation_images(str(tmp_path / "work"), ids[1:], count)
    assert [name for name, _ in files] == [p.name for p in paths[1:1 + count]]
    assert all(data == (tmp_path / "archive" / name).read_bytes() for name, data in files)
    images = validation.decode_validation_images(files, crop)
    assert {im.size for im in images} == {(crop or 128, crop or 128)}


# --------------------------------------------------------------------------------------------- champion rule
@pytest.mark.parametrize("candidate, champion, default, promote, shortfall, promoted, reason", [
    (-10.0, None, -5.0, False, None, True, "lower BD-rate than the shipped default"),
    (-4.0, None, -5.0, False, None, False, "not lower than the shipped default's"),
    (-5.0, None, -5.0, False, None, False, "not lower than the shipped default's"),
    (-10.0, -8.0, -5.0, False, None, True, "lower BD-rate than the shipped default and the champion"),
    (-7.0, -8.0, -5.0, False, None, False, "not lower than the champion's"),
    (-7.0, -6.0, -8.0, False, None, False, "not lower than the shipped default's"),
    (-4.0, -5.0, -6.0, False, None, False, "not lower than the shipped default and the champion's"),
    (-4.0, -5.0, -6.0, True, None, True, "forced by --promote"),
    (-10.0, None, -5.0, False, "too little validation data", False, "too little validation data"),
    (-10.0, None, -5.0, True, "too little validation data", True, "forced by --promote"),
    (math.nan, None, -5.0, False, None, False, "undefined"),
    (-1.0, math.nan, -5.0, False, None, False, "not lower than the shipped default's"),
    (-6.0, math.nan, -5.0, False, None, True, "lower BD-rate"),
])
def test_a_candidate_is_promoted_only_if_it_beats_the_champion_and_the_default(
        candidate, champion, default, promote, shortfall, promoted, reason):
    decided, why = registry.champion_decision(candidate, champion, default, promote, shortfall)
    assert decided is promoted and reason in why


@pytest.mark.parametrize("images, pixels, enough", [(2, 2 * 96 * 96, True), (1, 10**6, False), (3, 100, False)])
def test_too_little_validation_data_says_how_much_is_needed(images, pixels, enough):
    shortfall = registry.validation_shortfall(images, pixels, TINY_LOOP)
    assert (shortfall is None) is enough
    if not enough:
        assert f"{images} images, {pixels:,} pixels" in shortfall and "at least 2 images and 18,432 pixels" in shortfall


# --------------------------------------------------------------------------------------------- flow, SQLite store
def run_artifacts(client, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= run_artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def assert_tracked(client, run_id: str, steps: int, name: str, version: str) -> None:
    """Params, per-step and validation metrics, artifacts and the version's tags of one finished training run."""
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["train.steps"] == str(steps) and params["train.K"] == str(TINY_MODEL["K"])
    assert params["loop.checkpoint_every"] == "100" and json.loads(params["loop.qualities"]) == [20, 35, 50, 65, 80]
    assert params["data.hash"] == run.data.tags["saepress.data_hash"]
    assert run.data.tags["saepress.device"].startswith("cpu")
    for key in ("train/loss", "train/mse", "train/l1", "train/active"):
        history = client.get_metric_history(run_id, key)
        assert sorted({m.step for m in history}) == list(range(1, steps + 1)), key
    evaluation_steps = TINY_LOOP.evaluation_steps(steps)
    for key in ("val/bd_rate_vs_jpeg", "val/psnr_q50", "val/bpp_q50"):
        assert sorted({m.step for m in client.get_metric_history(run_id, key)}) == evaluation_steps, key
    assert 15 < run.data.metrics["val/psnr_q50"] < 60 and 0 < run.data.metrics["val/bpp_q50"] < 8
    assert run_artifacts(client, run_id) >= {
        "model/weights.pt", "model/config.json", "plots/atoms.png", "plots/rd.png", "plots/rd.json",
        "manifest/training_data.json", "config/training.json", "checkpoints/last.pt"}
    assert not any(path.endswith((".pkl", "MLmodel")) for path in run_artifacts(client, run_id))
    model_version = client.get_model_version(name, version)
    assert model_version.run_id == run_id and model_version.source.endswith("/model")
    assert model_version.tags["data_hash"] == run.data.tags["saepress.data_hash"]
    assert model_version.tags["code_version"].startswith("0.1.0")


@pytest.mark.slow
def test_train_flow_tracks_registers_and_races_the_default(tmp_path, prefect_harness, tiny_training):
    import mlflow
    from mlflow import MlflowClient

    from flows.train import train_flow
    from sae_model import Codec

    workdir = make_workdir(tmp_path)
    name = "codec-sqlite-test"
    # A 2-member model trained for 20 steps is worse than the shipped default: registered, not promoted.
    first = train_flow(workdir=str(workdir), steps=20, seed=0, model_name=name)
    assert mlflow.get_tracking_uri().startswith("sqlite:///")
    client = MlflowClient()
    assert first["model_uri"] == f"models:/{name}/{first['version']}" and not first["problems"]
    assert_tracked(client, first["run_id"], 20, name, first["version"])
    decision = first["decision"]
    assert decision["decision"] == "kept" and "shipped default" in decision["reason"]
    assert decision["default_bd_rate"] < decision["candidate_bd_rate"] and decision["champion_version"] is None
    assert decision["compress_with"] is None  # compress would use the shipped default
    assert [row["name"] for row in decision["table"]] == ["candidate", "default", "jpeg", "webp"]
    run = client.get_run(first["run_id"])
    assert run.data.metrics["decision/default_bd_rate"] == pytest.approx(decision["default_bd_rate"])
    assert run.data.metrics["decision/webp_bd_rate"] < 0 < run.data.metrics["decision/jpeg_bpp_q50"]
    assert run.data.tags["saepress.champion.default_fingerprint"] == Codec.pretrained().fingerprint
    rd = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=first["run_id"], artifact_path="plots/rd.json", dst_path=str(tmp_path / "rd"))).read_text())
    assert sorted(rd["codecs"]) == ["candidate", "default", "jpeg", "webp"]  # the plot shows the same codecs
    assert any(line.startswith("decision: kept") and "champion: none" in line for line in first["report"])
    with pytest.raises(Exception, match="champion"):
        client.get_model_version_by_alias(name, "champion")
    manifest = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=first["run_id"], artifact_path="manifest/training_data.json", dst_path=str(tmp_path / "m"))).read_text())
    assert manifest["catalog_sha256"] == hashlib.sha256((workdir / "catalog.parquet").read_bytes()).hexdigest()
    assert sorted(manifest["files"]) == ["part-00000.parquet", "part-00001.parquet"]

    forced = train_flow(workdir=str(workdir), steps=20, seed=1, model_name=name, promote=True)
    assert forced["decision"]["reason"] == "forced by --promote"
    champion = client.get_model_version_by_alias(name, "champion")
    assert str(champion.version) == forced["version"]
    assert Codec.load(f"models:/{name}@champion").fingerprint == champion.tags["fingerprint"]

    # Same seed and data: the same model, so the same BD-rate, which beats neither the champion nor the default;
    # the default, measured better than that champion on these images, is what compress should use here.
    again = train_flow(workdir=str(workdir), steps=20, seed=1, model_name=name)
    decision = again["decision"]
    assert decision["decision"] == "kept" and decision["champion_version"] == forced["version"]
    assert decision["champion_bd_rate"] == pytest.approx(decision["candidate_bd_rate"], abs=1e-9)
    assert [row["name"] for row in decision["table"]] == ["candidate", "champion", "default", "jpeg", "webp"]
    assert decision["compress_with"] is None
    tags = client.get_run(again["run_id"]).data.tags
    assert tags["saepress.champion.decision"] == "kept"
    assert float(tags["saepress.champion.champion_bd_rate"]) == pytest.approx(decision["champion_bd_rate"])
    assert any("kept" in line and f"models:/{name}/{forced['version']}" in line for line in again["report"])
    assert str(client.get_model_version_by_alias(name, "champion").version) == forced["version"]
    assert str(client.get_model_version_by_alias(name, "candidate").version) == again["version"]


@pytest.mark.slow
def test_a_model_trained_where_the_default_is_weak_is_promoted(tmp_path, prefect_harness, monkeypatch):
    """Page scans are far from the photographs the default was trained on: a warm-started 16-member model
    refined on a few of them beats it on held-out pages, and only then becomes champion."""
    from flows.train import train_flow

    monkeypatch.setattr(training, "training_config", functools.partial(
        training.training_config, loop=dataclasses.replace(TINY_LOOP, val_crop=128), batch_size=64))
    workdir = make_workdir(tmp_path, images=8, val=2, per_image=300, content="documents")
    trained = train_flow(workdir=str(workdir), steps=60, seed=0, model_name="codec-documents-test")
    decision = trained["decision"]
    assert trained["report"][0].startswith("trained 60 steps (warm start)")
    assert decision["candidate_bd_rate"] < decision["default_bd_rate"] - 0.5, decision
    assert decision["decision"] == "promoted", decision
    assert decision["compress_with"] == trained["model_uri"]


@pytest.mark.slow
def test_train_flow_refuses_bad_resume(tmp_path, prefect_harness, tiny_training):
    from tasks.errors import ConfigError
    from flows.train import train_flow

    workdir = make_workdir(tmp_path, images=4, val=1, per_image=100)
    with pytest.raises(ConfigError, match="no MLflow run"):
        train_flow(workdir=str(workdir), resume="0" * 32)
    with pytest.raises(ConfigError, match="no patch dataset"):
        train_flow(workdir=str(tmp_path / "nowhere"))


@pytest.mark.slow
def test_train_flow_says_when_the_tracking_server_is_down(tmp_path, prefect_harness, monkeypatch):
    from tasks.errors import ConfigError
    from flows.train import train_flow

    workdir = make_workdir(tmp_path, images=3, val=1, per_image=50)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(ConfigError, match="cannot use the MLflow tracking store http://127.0.0.1"):
        train_flow(workdir=str(workdir), steps=1)


# --------------------------------------------------------------------------------------------- kill and resume
KILLED_TRAINING = """
import json, os, signal, sys
import sae_model
from tasks import training, validation

run_id, config, dataset, kill_at = json.loads(open(sys.argv[1]).read())
step = sae_model.Trainer.step

def step_then_die(self, batch):
    metrics = step(self, batch)
    if self.step_count == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no final flush: as if the machine went away
    return metrics

sae_model.Trainer.step = step_then_die
val = validation.fetch_validation_images(sys.argv[2], dataset["val_image_ids"], config["loop"]["val_images"])
training.train(run_id, config, dataset, val)
"""


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_result(tmp_path, prefect_harness, tiny_training):
    from mlflow import MlflowClient

    import mlflow
    import torch

    from flows.settings import Settings
    from flows.train import train_flow
    from sae_model import Codec

    steps, kill_at = 240, 210
    workdir = make_workdir(tmp_path)
    settings = Settings.resolve().prepare()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)  # as train_flow does; an earlier test may have moved it
    dataset = patch_stream.describe_patches(str(workdir))
    config = training.training_config(steps, 0)
    run_id = tracking.start_run(str(workdir), config, dataset, settings.mlflow_artifact_root)
    job = tmp_path / "job.json"
    job.write_text(json.dumps([run_id, config, dataset, kill_at]))
    killed = subprocess.run([sys.executable, "-c", KILLED_TRAINING, str(job), str(workdir)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    client = MlflowClient(settings.mlflow_tracking_uri)
    assert client.get_run(run_id).data.metrics["checkpoint_step"] == 200

    resumed = train_flow(workdir=str(workdir), resume=run_id, model_name="codec-resume-test")
    straight = train_flow(workdir=str(workdir), steps=steps, seed=0, model_name="codec-resume-test")

    assert resumed["run_id"] == run_id and client.get_run(run_id).info.status == "FINISHED"
    a, b = client.get_run(run_id).data.metrics, client.get_run(straight["run_id"]).data.metrics
    assert a["checkpoint_step"] == b["checkpoint_step"] == steps
    assert sorted({m.step for m in client.get_metric_history(run_id, "train/loss")}) == list(range(1, steps + 1))
    for key in ("train/loss", "train/mse", "train/l1"):
        assert a[key] == pytest.approx(b[key], rel=1e-5), key
    assert a["train/active"] == pytest.approx(b["train/active"], abs=0.05)  # a count: one code may flip
    # Float sums may differ in the last bits between processes (BLAS kernels pick paths by memory alignment), so
    # the weights are compared numerically, not by fingerprint. The encoder's decisions (member choice, deadzone)
    # are discrete, so a last-bit difference can flip a few of them: validation metrics get a small tolerance.
    resumed_codec, straight_codec = (Codec.load(f"models:/codec-resume-test/{result['version']}")
                                     for result in (resumed, straight))
    assert torch.allclose(resumed_codec.weights["bases"], straight_codec.weights["bases"], atol=1e-4)
    assert (resumed_codec.weights["sigma16"] - straight_codec.weights["sigma16"]).abs().max() <= 1
    for key, tolerance in (("val/bd_rate_vs_jpeg", 0.5), ("val/psnr_q50", 0.05), ("val/bpp_q50", 0.02)):
        assert a[key] == pytest.approx(b[key], abs=tolerance), key

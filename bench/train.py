"""Training benchmark: time and validation BD-rate of `saepress train`, and what a per-archive model buys.

    python bench/train.py [--content documents|textures|dev] [--images 24] [--steps N] [--cores 2]

1. Generates an archive of one kind of content (or takes the dev photographs), runs the real ingest and extract
   flows, then `train_flow` on `--cores` CPU cores (default 2, the target machine) against a throw-away MLflow
   store. Reports training time, s/step (and the time the default step count would take) and the final
   validation BD-rate vs JPEG.
2. Compares the archive's own model with the shipped default (`Codec.pretrained()`) on the archive's validation
   images (full size): BD-rate vs JPEG of both.
3. With CUDA present, training throughput (samples/s) on the GPU vs the CPU for the same batches.

Prints a table and writes bench/results/train-<content>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
DEV_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev-images"


def documents(rng: np.random.Generator, size: int):
    """A page scan: dark lines of text-like strings on slightly uneven paper, a little blur and sensor noise."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    page = Image.new("L", (size, size), int(rng.integers(225, 250)))
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=int(rng.integers(11, 18)))
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz      ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;"))
    y = int(rng.integers(4, 20))
    while y < size - 16:
        line = "".join(rng.choice(letters, int(rng.integers(20, 60))))
        draw.text((int(rng.integers(4, 30)), y), line, fill=int(rng.integers(10, 70)), font=font)
        y += int(rng.integers(16, 26))
    page = page.filter(ImageFilter.GaussianBlur(0.6))
    noisy = np.asarray(page, np.float32) + rng.normal(0, 3, (size, size))
    tint = np.array([1.0, 0.98, 0.93]) * rng.uniform(0.95, 1.0)  # paper is rarely pure grey
    return Image.fromarray(np.clip(noisy[..., None] * tint, 0, 255).astype(np.uint8), "RGB")


def textures(rng: np.random.Generator, size: int):
    """Oriented procedural texture: a few sinusoidal gratings at random angles plus fine noise, in colour."""
    from PIL import Image

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    image = np.zeros((size, size, 3), np.float32)
    for _ in range(int(rng.integers(2, 5))):
        angle, period = rng.uniform(0, np.pi), rng.uniform(4, 24)
        wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period + rng.uniform(0, 6.3))
        image += wave[..., None] * rng.uniform(10, 40, 3)
    image += 128 + rng.normal(0, 4, image.shape)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB")


def make_archive(content: str, count: int, size: int, folder: Path) -> str:
    if content == "dev":
        return str(DEV_IMAGES / "*.png")
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        {"documents": documents, "textures": textures}[content](rng, size).save(folder / f"{content}_{i:03d}.png")
    return str(folder)


def gpu_vs_cpu(workdir: Path, steps: int) -> dict[str, float]:
    """Samples/s of Trainer.step with the default config on CUDA and on the CPU, same batches."""
    from sae_model import Trainer, TrainConfig
    from tasks import patch_stream

    dataset = patch_stream.describe_patches(str(workdir))
    config = TrainConfig()
    stream = patch_stream.PatchStream(dataset["chunks"], dataset["patch_spec"]["dim"], 0, 65536)
    batches = [b for _, b in zip(range(steps + 2), stream.batches(config.batch_size))]
    rates = {}
    for device in ("cuda", "cpu"):
        trainer = Trainer(config, device=device)
        trainer.initialize(stream.head(8192))
        for batch in batches[:2]:  # warm-up: kernels, allocator
            trainer.step(batch)
        started = time.perf_counter()
        for batch in batches[2:]:
            trainer.step(batch)
        rates[device] = steps * config.batch_size / (time.perf_counter() - started)
    return rates


def own_vs_default(workdir: Path, model_uri: str, val_images: int) -> dict[str, float]:
    """BD-rate vs JPEG of the archive's own model and of the shipped default on the full validation images."""
    from sae_model import Codec, evaluate
    from tasks import patch_stream, training, validation

    dataset = patch_stream.describe_patches(str(workdir))
    files = validation.fetch_validation_images(str(workdir), dataset["val_image_ids"], val_images)
    images = validation.decode_validation_images(files, crop=None)
    qualities = training.LoopConfig().qualities
    curves = {"jpeg": evaluate.reference_curve("jpeg", images, qualities)}
    for name, codec in (("own", Codec.load(model_uri)), ("default", Codec.pretrained())):
        curves[name] = evaluate.codec_curve(codec, images, qualities, name=name)
    summary = evaluate.summarise(curves)
    return {name: summary["codecs"][name]["bd_rate_vs_jpeg"] for name in ("own", "default")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--content", choices=("documents", "textures", "dev"), default="documents")
    parser.add_argument("--images", type=int, default=24, help="generated images (not for --content dev)")
    parser.add_argument("--size", type=int, default=384, help="generated image side in pixels")
    parser.add_argument("--steps", type=int, help="training steps (default: the model's default)")
    parser.add_argument("--cores", type=int, default=2, help="CPU cores to train on (the target machine has 2)")
    parser.add_argument("--gpu-steps", type=int, default=20, help="steps per device for the GPU vs CPU figure")
    args = parser.parse_args()

    # Pin the whole process (and the Dask workers it starts) to the first N cores: "2 cores" means 2 cores.
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.cores])
    scratch = Path(tempfile.mkdtemp(prefix="saepress-bench-train-"))
    os.environ["SAEPRESS_HOME"] = str(scratch / "home")  # throw-away MLflow store and Dask scratch
    os.environ.pop("MLFLOW_TRACKING_URI", None)

    from flows.extract import extract_flow
    from flows.ingest import ingest_flow
    from mlflow import MlflowClient

    from flows.train import train_flow
    from sae_model import TrainConfig

    source = make_archive(args.content, args.images, args.size, scratch / "archive")
    workdir = scratch / "work"
    ingest_flow(source=source, out=str(workdir))
    extract_flow(workdir=str(workdir))
    started = time.perf_counter()
    trained = train_flow(workdir=str(workdir), steps=args.steps)
    seconds = time.perf_counter() - started
    steps, default = args.steps or TrainConfig().steps, TrainConfig()
    # Pure step time from the run's own throughput metric; the rest (validation passes, registry) is fixed cost.
    throughput = [m.value for m in MlflowClient().get_metric_history(trained["run_id"], "train/samples_per_s")]
    step_seconds = default.batch_size / float(np.mean(throughput))
    result = {
        "content": args.content, "images": args.images if args.content != "dev" else "dev", "cores": args.cores,
        "steps": steps, "train_flow_seconds": seconds, "seconds_per_step": step_seconds,
        "fixed_seconds": seconds - steps * step_seconds, "default_steps": default.steps,
        "default_steps_seconds_projected": seconds - steps * step_seconds + default.steps * step_seconds,
        "val_bd_rate_vs_jpeg": trained["bd_rate"], "model_uri": trained["model_uri"],
        "own_vs_default_bd_rate_vs_jpeg": own_vs_default(workdir, trained["model_uri"], 8),
    }
    import torch

    if torch.cuda.is_available():
        result["samples_per_s"] = gpu_vs_cpu(workdir, args.gpu_steps)

    print(f"{'content':<12}{'cores':>6}{'steps':>7}{'train s':>9}{'s/step':>8}{'default steps, s':>18}"
          f"{'val BD-rate':>13}")
    print(f"{args.content:<12}{args.cores:>6}{steps:>7}{seconds:>9.0f}{step_seconds:>8.2f}"
          f"{result['default_steps_seconds_projected']:>18.0f}{trained['bd_rate']:>12.1f}%")
    comparison = result["own_vs_default_bd_rate_vs_jpeg"]
    print(f"BD-rate vs JPEG on the archive's validation images: own model {comparison['own']:+.1f}%, "
          f"shipped default {comparison['default']:+.1f}%")
    if "samples_per_s" in result:
        rates = result["samples_per_s"]
        print(f"samples/s: GPU {rates['cuda']:.0f}, CPU {rates['cpu']:.0f} ({rates['cuda'] / rates['cpu']:.1f}x)")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"train-{args.content}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""Training benchmark: does an archive's own model pay, and what does training cost on 2 CPU cores.

    python bench/train.py [--contents documents photos] [--images 30] [--held-out 8] [--steps N] [--cores 2]

For each content (bench/archives.py: generated page scans, tiles of the dev photographs the default never saw):

1. writes an archive of --images images and, apart, --held-out images of the same content that no job sees;
2. runs the real ingest, extract and `train_flow` (warm start, the flow's own validation and champion decision)
   on --cores CPU cores against a throw-away MLflow store, and times the training;
3. codes the held-out images with the archive's own model and with the shipped default (`Codec.pretrained()`):
   BD-rate vs JPEG of both, measured in this run;
4. with CUDA present, training throughput (samples/s) on the GPU and on the CPU for the same batches.

Prints a table and writes bench/results/train.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import archives  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def gpu_vs_cpu(workdir: Path, steps: int) -> dict[str, float]:
    """Samples/s of Trainer.step with the default config on CUDA and on the CPU, same batches."""
    from sae_model import Codec, Trainer, TrainConfig
    from tasks import patch_stream

    dataset = patch_stream.describe_patches(str(workdir))
    config = TrainConfig()
    stream = patch_stream.PatchStream(dataset["chunks"], dataset["patch_spec"]["dim"], 0, 65536)
    batches = [b for _, b in zip(range(steps + 2), stream.batches(config.batch_size))]
    rates = {}
    for device in ("cuda", "cpu"):
        trainer = Trainer(config, device=device)
        trainer.initialize_from(Codec.pretrained())
        for batch in batches[:2]:  # warm-up: kernels, allocator
            trainer.step(batch)
        started = time.perf_counter()
        for batch in batches[2:]:
            trainer.step(batch)
        rates[device] = steps * config.batch_size / (time.perf_counter() - started)
    return rates


def own_vs_default(model_uri: str, held_out: list) -> dict[str, float]:
    """BD-rate vs JPEG of the archive's own model and of the shipped default on the held-out images."""
    from sae_model import Codec, evaluate

    curves = {"jpeg": evaluate.reference_curve("jpeg", held_out, evaluate.QUALITIES["jpeg"])}
    for name, codec in (("own", Codec.load(model_uri)), ("default", Codec.pretrained())):
        curves[name] = evaluate.codec_curve(codec, held_out, evaluate.QUALITIES["saepress"], name=name)
    summary = evaluate.summarise(curves)
    return {name: summary["codecs"][name]["bd_rate_vs_jpeg"] for name in ("own", "default")}


def bench_content(content: str, args, scratch: Path) -> dict:
    from mlflow import MlflowClient

    from flows.extract import extract_flow
    from flows.ingest import ingest_flow
    from flows.train import train_flow
    from sae_model import TrainConfig

    source = archives.write(archives.images(content, args.images, held_out=False, dev_images=args.dev_images),
                            scratch / f"archive-{content}", content)
    held_out = archives.images(content, args.held_out, held_out=True, dev_images=args.dev_images)
    for i, image in enumerate(held_out):
        image.filename = f"{content}-held-out-{i}"
    workdir = scratch / f"work-{content}"
    ingest_flow(source=str(source), out=str(workdir))
    extract_flow(workdir=str(workdir))
    started = time.perf_counter()
    trained = train_flow(workdir=str(workdir), steps=args.steps, model_name=f"bench-{content}")
    seconds = time.perf_counter() - started
    steps, default = args.steps or TrainConfig().steps, TrainConfig()
    # Pure step time from the run's own throughput metric; the rest (validation passes, registry) is fixed cost.
    throughput = [m.value for m in MlflowClient().get_metric_history(trained["run_id"], "train/samples_per_s")]
    step_seconds = default.batch_size / float(np.mean(throughput))
    result = {
        "content": content, "images": args.images, "held_out": args.held_out, "cores": args.cores, "steps": steps,
        "train_flow_seconds": seconds, "seconds_per_step": step_seconds,
        "fixed_seconds": seconds - steps * step_seconds,
        "default_steps_seconds_projected": seconds + (default.steps - steps) * step_seconds,
        "decision": {k: trained["decision"][k] for k in ("decision", "reason")},
        "held_out_bd_rate_vs_jpeg": own_vs_default(trained["model_uri"], held_out),
    }
    import torch

    if torch.cuda.is_available():
        result["samples_per_s"] = gpu_vs_cpu(workdir, args.gpu_steps)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contents", nargs="+", choices=archives.CONTENTS, default=list(archives.CONTENTS))
    parser.add_argument("--images", type=int, default=30, help="images in each archive")
    parser.add_argument("--held-out", type=int, default=8, help="images of the same content that no job sees")
    parser.add_argument("--steps", type=int, help="training steps (default: the model's default)")
    parser.add_argument("--cores", type=int, default=2, help="CPU cores to train on (the target machine has 2)")
    parser.add_argument("--gpu-steps", type=int, default=20, help="steps per device for the GPU vs CPU figure")
    parser.add_argument("--dev-images", type=Path, default=archives.DEV_IMAGES, help="for the photos archive")
    args = parser.parse_args()

    # Pin the whole process (and the Dask workers it starts) to the first N cores: "2 cores" means 2 cores.
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.cores])
    scratch = Path(tempfile.mkdtemp(prefix="saepress-bench-train-"))
    os.environ["SAEPRESS_HOME"] = str(scratch / "home")  # throw-away MLflow store and Dask scratch
    os.environ.pop("MLFLOW_TRACKING_URI", None)

    results = [bench_content(content, args, scratch) for content in args.contents]
    print(f"\nBD-rate vs JPEG on {args.held_out} held-out images per archive of {args.images} images, "
          f"{args.cores} CPU cores")
    print(f"{'content':<11}{'steps':>6}{'train s':>9}{'s/step':>8}{'200 steps, s':>14}{'own':>9}{'default':>9}"
          f"{'own-default':>13}  decision")
    for r in results:
        bd = r["held_out_bd_rate_vs_jpeg"]
        print(f"{r['content']:<11}{r['steps']:>6}{r['train_flow_seconds']:>9.0f}{r['seconds_per_step']:>8.2f}"
              f"{r['default_steps_seconds_projected']:>14.0f}{bd['own']:>+8.2f}%{bd['default']:>+8.2f}%"
              f"{bd['own'] - bd['default']:>+12.2f}%  {r['decision']['decision']} ({r['decision']['reason']})")
        if "samples_per_s" in r:
            rates = r["samples_per_s"]
            print(f"{'':<11}samples/s: GPU {rates['cuda']:.0f}, CPU {rates['cpu']:.0f} "
                  f"({rates['cuda'] / rates['cpu']:.1f}x)")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "train.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

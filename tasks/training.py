"""The training loop: a codec trained on the patch stream, validated, checkpointed and logged to its MLflow run.

Training runs in the calling process (one GPU or all CPU cores). An interrupted run continues from its last
checkpoint artifact and sees exactly the batches an uninterrupted one would have seen (tasks.patch_stream).
"""
from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sae_model import evaluate
from tasks import defaults
from tasks.errors import ConfigError
from tasks.patch_stream import PatchStream
from tasks.tracking import TAG, MetricBuffer, client
from tasks.validation import Validator, bd_rate_of, decode_validation_images

CHECKPOINT = "checkpoints/last.pt"


@dataclass(frozen=True)
class LoopConfig:
    """Everything about a training run that is not the model's own hyper-parameters."""

    evaluations: int = 4             # validation passes, evenly spaced; the last one is at the final step
    checkpoint_every: int = 100      # steps between checkpoints logged to the run
    log_every: int = 25              # per-step metrics are sent to MLflow in batches of this many steps
    val_images: int = 8              # validation images used for real bpp/PSNR and BD-rate
    val_crop: int | None = 256       # centre crop of each validation image: keeps a validation pass to seconds on CPU
    qualities: tuple[float, ...] = evaluate.QUALITIES["saepress"]
    min_val_images: int = defaults.MIN_VAL_IMAGES   # least validation data for a promotion
    min_val_pixels: int = defaults.MIN_VAL_PIXELS
    start: str = "cold"              # "warm": from the shipped default's transforms and variances; "cold": data-driven
    init_samples: int = 8192         # patches for the trainer's data-driven initialisation
    window_rows: int = 65536         # shuffle window: patches loaded (and permuted) together, ~48 MiB at dim 192

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "LoopConfig":
        return cls(**{**values, "qualities": tuple(values["qualities"])})

    def evaluation_steps(self, steps: int) -> list[int]:
        count = max(1, min(self.evaluations, steps))
        return sorted({math.ceil(steps * (i + 1) / count) for i in range(count)})


def training_config(steps: int | None, seed: int, loop: LoopConfig | None = None,
                    start: str = defaults.TRAIN_START, train_rows: int = 0, **model: Any) -> dict[str, Any]:
    """The full configuration of a training as JSON-able dicts: the codec's TrainConfig and the loop's settings.

    ``start`` "auto" becomes "warm" for a small dataset (fewer than defaults.WARM_BELOW_ROWS training patches) when
    the model has the shipped default's number of members, else "cold"; the run records the resolved value.
    """
    from sae_model import Codec, TrainConfig

    if start not in defaults.TRAIN_STARTS:
        raise ConfigError(f"--start must be one of {', '.join(defaults.TRAIN_STARTS)}, got {start!r}")
    train = dataclasses.replace(TrainConfig(), seed=seed, **({"steps": steps} if steps else {}), **model)
    members = Codec.pretrained().config["K"]
    if start == "warm" and train.K != members:
        raise ConfigError(f"a warm start needs K={members} (the shipped default's members), this training has "
                          f"K={train.K}; use --start cold")
    if start == "auto":
        start = "warm" if train.K == members and train_rows < defaults.WARM_BELOW_ROWS else "cold"
    loop = dataclasses.replace(loop or LoopConfig(), start=start)
    return {"train": dataclasses.asdict(train), "loop": dataclasses.asdict(loop)}


def use_all_cpu_cores() -> int:
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(cores)
    return cores


def train(run_id: str, config: dict[str, Any], dataset: dict[str, Any],
          val_files: list[tuple[str, bytes]]) -> dict[str, Any]:
    """Train (or continue training from the run's checkpoint) and log everything to the run.

    Returns the step count, the final validation metrics, the BD-rate vs JPEG and the codec's fingerprint.
    """
    import torch

    from sae_model import Codec, Trainer, TrainConfig

    loop = LoopConfig.from_dict(config["loop"])
    train_config = TrainConfig(**config["train"])
    steps, batch_size = train_config.steps, train_config.batch_size
    mlflow_client = client()
    trainer = Trainer(train_config, device=None)
    cores = use_all_cpu_cores() if trainer.device == "cpu" else None
    mlflow_client.set_tag(run_id, TAG + "device", trainer.device if cores is None else f"cpu ({cores} threads)")

    stream = PatchStream(dataset["chunks"], dim=dataset["patch_spec"]["dim"], seed=train_config.seed,
                         window_rows=loop.window_rows)
    checkpoint = _download_checkpoint(run_id)
    if checkpoint is None:
        torch.manual_seed(train_config.seed)
        if loop.start == "warm":
            default = Codec.pretrained()
            trainer.initialize_from(default)
            mlflow_client.set_tag(run_id, TAG + "warm_start_from", default.fingerprint)
        else:
            trainer.initialize(stream.head(loop.init_samples))
    else:
        trainer.load_state_dict(checkpoint["trainer"])
        torch.set_rng_state(checkpoint["torch_rng"])
    start = trainer.step_count
    validator = Validator(decode_validation_images(val_files, loop.val_crop), loop.qualities)
    evaluation_steps = set(loop.evaluation_steps(steps))
    metrics = MetricBuffer(mlflow_client, run_id)
    summary, summary_step = None, None
    clock, clock_step = time.perf_counter(), start

    for step, batch in zip(range(start + 1, steps + 1), stream.batches(batch_size, start)):
        values = trainer.step(batch)
        metrics.add(step, {f"train/{key}": value for key, value in values.items()})
        if step % loop.log_every == 0 or step == steps:
            elapsed = time.perf_counter() - clock
            metrics.add(step, {"train/samples_per_s": (step - clock_step) * batch_size / max(elapsed, 1e-9)})
            clock, clock_step = time.perf_counter(), step
            metrics.flush()
        if step in evaluation_steps:
            summary, summary_step = validator.summary(trainer.to_codec()), step
            metrics.add(step, validator.metrics(summary))
            metrics.flush()
        if step % loop.checkpoint_every == 0 or step == steps:
            metrics.flush()
            _upload_checkpoint(run_id, trainer, step)

    codec = trainer.to_codec()
    if summary_step != steps:  # resumed from the final checkpoint: nothing left to train, nothing measured yet
        summary = validator.summary(codec)
    _log_model_artifacts(mlflow_client, run_id, codec)
    return {"steps": trainer.step_count, "bd_rate": bd_rate_of(summary),
            "validation": validator.metrics(summary), "device": trainer.device, "fingerprint": codec.fingerprint}


def _upload_checkpoint(run_id: str, trainer, step: int) -> None:
    import torch

    state = {"trainer": trainer.state_dict(), "torch_rng": torch.get_rng_state()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(CHECKPOINT).name
        torch.save(state, path)
        client().log_artifact(run_id, str(path), str(Path(CHECKPOINT).parent))
    client().log_metric(run_id, "checkpoint_step", step, step=step)


def _download_checkpoint(run_id: str) -> dict[str, Any] | None:
    import mlflow.artifacts
    import torch

    if not any(f.path == CHECKPOINT for f in client().list_artifacts(run_id, str(Path(CHECKPOINT).parent))):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=CHECKPOINT, dst_path=tmp)
        # weights_only: a checkpoint is tensors, numbers and dicts; never unpickle arbitrary objects.
        # map_location: a run checkpointed on a GPU can be resumed on a machine without one.
        return torch.load(path, weights_only=True, map_location="cpu")


def _log_model_artifacts(mlflow_client, run_id: str, codec) -> None:
    """The model and its atoms; the RD plot comes with the champion decision (every contender on the same images)."""
    from sae_model import atoms_image

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        codec.save(model_dir)
        mlflow_client.log_artifacts(run_id, str(model_dir), "model")
        atoms_image(codec).save(Path(tmp) / "atoms.png")
        mlflow_client.log_artifact(run_id, str(Path(tmp) / "atoms.png"), "plots")

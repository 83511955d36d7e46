"""`saepress evaluate`: rate-distortion of a saepress model against Pillow's codecs on a folder of images.

Runs in-process (no Prefect server, no Dask): it is a measurement, and one process keeps timings honest.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tasks.errors import ConfigError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".ppm", ".gif"}


def evaluate(images_dir: str, out: str, model: str | None = None) -> dict[str, Any]:
    from PIL import Image

    from sae_model import Codec, evaluate as ev

    paths = sorted(p for p in Path(images_dir).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ConfigError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {images_dir}")
    images = []
    for path in paths:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        # sae_model.evaluate tells images apart by .filename (the per-image BD-rate); converted copies lose it.
        image.filename = path.relative_to(images_dir).as_posix()
        images.append(image)
    codec = Codec.load(model) if model else Codec.pretrained()

    curves = {"saepress": ev.codec_curve(codec, images, ev.QUALITIES["saepress"])}
    for name in ev.REFERENCES:
        curves[name] = ev.reference_curve(name, images, ev.QUALITIES[name])
    summary = ev.summarise(curves)

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "rd.json").write_text(json.dumps({"images": [str(p) for p in paths], "model": model or "pretrained",
                                                 "curves": curves, "summary": summary}, indent=2))
    ev.rd_plot(summary, out_dir / "rd.png")

    report = [f"{len(images)} images from {images_dir}, model {model or 'pretrained'} ({codec.fingerprint[:12]})"]
    report += _bd_rate_table(summary, [image.filename for image in images])
    report.append(f"wrote {out_dir / 'rd.json'} and {out_dir / 'rd.png'}")
    return {"report": report, "problems": [], "summary": summary}


def _bd_rate_table(summary: dict[str, Any], names: list[str]) -> list[str]:
    """BD-rate vs JPEG, one row per image and the mean over images (one column per codec other than JPEG)."""
    codecs = [name for name in summary["codecs"] if name != "jpeg"]
    width = max(len(name) for name in names + ["image"])
    lines = ["BD-rate vs JPEG (negative: fewer bytes at equal PSNR)",
             f"{'image':<{width}} " + " ".join(f"{name:>10}" for name in codecs)]
    for image in names:
        lines.append(f"{image:<{width}} " + " ".join(
            f"{summary['codecs'][name]['bd_rate_vs_jpeg_per_image'].get(image, float('nan')):>9.1f}%"
            for name in codecs))
    lines.append(f"{'mean':<{width}} " + " ".join(f"{summary['codecs'][name]['bd_rate_vs_jpeg']:>9.1f}%"
                                                  for name in codecs))
    return lines

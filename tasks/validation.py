"""Validation: the held-out original images and the real rate-distortion of a codec on them, against JPEG."""
from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow.compute as pc

from sae_model import evaluate
from tasks import store


def fetch_validation_images(workdir: str, image_ids: list[str], count: int) -> list[tuple[str, bytes]]:
    """The original files of up to ``count`` validation images (first by path), read through the catalog's source."""
    from tasks.ingest import catalog_url
    from tasks.sources import open_source

    url = catalog_url(workdir)
    catalog = store.read_table(url, columns=["id", "path", "status"])
    source_url = (catalog.schema.metadata or {}).get(b"saepress.source", b"").decode()
    if not source_url:
        raise ValueError(f"{url} has no saepress.source metadata")
    wanted = set(image_ids)
    paths: dict[str, str] = {}
    for row in catalog.filter(pc.equal(catalog["status"], "ok")).to_pylist():
        if row["id"] in wanted:
            paths.setdefault(row["id"], row["path"])
    chosen = sorted(paths.values())[:count]
    return sorted(open_source(source_url).read_many(chosen))


def decode_validation_images(files: list[tuple[str, bytes]], crop: int | None) -> list["Image.Image"]:  # noqa: F821
    from PIL import Image

    from sae_model import metadata

    images = []
    for name, data in files:
        # metadata.upright, not ImageOps.exif_transpose: EXIF Pillow cannot write back must not stop training.
        image = metadata.upright(Image.open(io.BytesIO(data))).image.convert("RGB")
        if crop:
            image = evaluate.centre_crop(image, crop)
        # sae_model.evaluate tells images apart by .filename (for the per-image BD-rate); converted copies lose it.
        image.filename = name
        images.append(image)
    return images


class Validator:
    """Real encode/decode rate-distortion of a codec on the validation images, against JPEG on the same images."""

    def __init__(self, images: list, qualities: tuple[float, ...]):
        self.images, self.qualities = images, tuple(qualities)
        self.jpeg = evaluate.reference_curve("jpeg", images, evaluate.QUALITIES["jpeg"])

    def summary(self, codec) -> dict[str, Any]:
        return evaluate.summarise({"saepress": evaluate.codec_curve(codec, self.images, self.qualities),
                                   "jpeg": self.jpeg})

    @staticmethod
    def metrics(summary: dict[str, Any]) -> dict[str, float]:
        curve = summary["codecs"]["saepress"]
        values = {"val/bd_rate_vs_jpeg": float(curve["bd_rate_vs_jpeg"])}
        for quality, bpp, psnr in zip(curve["quality"], curve["bpp"], curve["psnr"]):
            values[f"val/psnr_q{quality:g}"] = float(psnr)
            values[f"val/bpp_q{quality:g}"] = float(bpp)
        return values

    def bd_rate(self, codec) -> float:
        return bd_rate_of(self.summary(codec))

    def compare(self, codecs: dict[str, Any], references: tuple[str, ...], quality: float) -> dict[str, Any]:
        """Several codecs and reference formats on the same images, in this process.

        Returns the summary of all curves (BD-rate vs JPEG, mean curves; JPEG included) and, per name, the mean bpp
        and PSNR at ``quality`` on the codec's own quality scale.
        """
        curves = {"jpeg": self.jpeg}
        points = {}
        for name, codec in codecs.items():
            curves[name] = evaluate.codec_curve(codec, self.images, self.qualities, name=name)
            points[name] = _mean_point(evaluate.codec_curve(codec, self.images, (quality,), name=name))
        for name in ("jpeg", *references):
            if name != "jpeg":
                curves[name] = evaluate.reference_curve(name, self.images, evaluate.QUALITIES[name])
            points[name] = _mean_point(evaluate.reference_curve(name, self.images, (int(quality),)))
        return {"summary": evaluate.summarise(curves), "points": points, "quality": quality,
                "images": len(self.images), "pixels": sum(im.width * im.height for im in self.images)}


def _mean_point(records: list[dict]) -> dict[str, float]:
    return {"bpp": float(np.mean([r["bpp"] for r in records])),
            "psnr": float(np.mean([min(r["psnr"], 100.0) for r in records]))}


def bd_rate_of(summary: dict[str, Any]) -> float:
    return float(summary["codecs"]["saepress"]["bd_rate_vs_jpeg"])

"""`saepress evaluate`: every image is measured under its own name, and the summary has a row per image."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

from flows.evaluate import evaluate


def textured(seed: int, size: int = 64) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    planes = [128 + 90 * np.sin((x * np.cos(a) + y * np.sin(a)) / (3 + seed)) for a in (0.4, 1.3, 2.1)]
    return Image.fromarray(np.clip(np.stack(planes, -1) + rng.normal(0, 6, (size, size, 3)), 0, 255).astype(np.uint8))


def test_evaluate_names_each_image_and_reports_one_row_per_image_and_the_mean(tmp_path):
    names = ["a/photo.png", "b/photo.png"]  # same file name in two folders: told apart by their relative paths
    for seed, name in enumerate(names):
        (tmp_path / "images" / name).parent.mkdir(parents=True)
        textured(seed).save(tmp_path / "images" / name)
    result = evaluate(str(tmp_path / "images"), str(tmp_path / "out"))
    per_image = result["summary"]["codecs"]["saepress"]["bd_rate_vs_jpeg_per_image"]
    assert sorted(per_image) == names
    rows = {line.split()[0]: line.split()[1:] for line in result["report"] if line.split()[:1] in ([n] for n in
                                                                                                   names + ["mean"])}
    assert sorted(rows) == sorted(names + ["mean"])
    finite = [v for v in per_image.values() if math.isfinite(v)]
    assert finite, "the test images must give a BD-rate"
    assert float(rows["mean"][0].rstrip("%")) == round(sum(finite) / len(finite), 1)
    for name in names:
        assert float(rows[name][0].rstrip("%")) == round(per_image[name], 1)


def test_every_codec_is_charged_for_the_pixels_only_not_for_an_icc_profile():
    """Pillow's JPEG writer drops an ICC profile, saepress and AVIF keep it: a profile must not count against them."""
    from sae_model import Codec
    from sae_model import evaluate as rd

    plain = textured(3)
    tagged = plain.copy()
    tagged.info["icc_profile"] = bytes(range(256)) * 12  # 3 KB, as skimage_astronaut's
    codec = Codec.pretrained()
    for curve in (lambda im: rd.codec_curve(codec, [im], (50,)), lambda im: rd.reference_curve("avif", [im], (50,))):
        assert [r["bytes"] for r in curve(tagged)] == [r["bytes"] for r in curve(plain)]
    assert tagged.info["icc_profile"], "the caller's image is left as it was"

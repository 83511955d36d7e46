"""Calibrate saepress's quality scale against Pillow's JPEG (prints encoder.QUALITY_KNOTS):

    python bench/calibrate.py ../shared/data/dev-images [--out bench/results]

On the fixed training subset (sae_model.pretrained.TRAIN_FILES: no held-out image is used),
full size: the mean RGB PSNR of Pillow's JPEG (4:2:0, optimize) at each quality 1..100, and of
saepress at luma steps 2**(i/2) / 2 samples; then for quality Q = 0, 5, ..., KNEE the step at
which saepress's mean PSNR equals JPEG's at Q (log-linear interpolation), and from KNEE to 100
a log-linear run down to FINEST_STEP16, so the top of the scale stays near-lossless where JPEG
100 stops at ~42 dB. Writes calibrate.json under --out.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from sae_model import Codec, encoder, evaluate  # noqa: E402
from sae_model.pretrained import TRAIN_FILES  # noqa: E402

KNOT_STEP = 5
KNEE = 95
FINEST_STEP16 = 8
STEPS16 = [int(round(8 * 2 ** (i / 2))) for i in range(0, 21, 2)]  # 8 .. 8192


def jpeg_psnr(images) -> dict[int, float]:
    out = {}
    for q in range(1, 101):
        vals = []
        for im in images:
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=q, subsampling=2, optimize=True)
            with Image.open(io.BytesIO(buf.getvalue())) as d:
                vals.append(evaluate.psnr(np.asarray(im), np.asarray(d.convert("RGB"))))
        out[q] = float(np.mean(vals))
    out[0] = out[1]  # Pillow treats 0 like 1
    return out


def saepress_psnr(codec: Codec, images) -> dict[int, float]:
    """Mean PSNR per step16 (the quality -> step map replaced for the measurement)."""
    out = {}
    original = encoder.quality_to_step16
    try:
        for s16 in STEPS16:
            encoder.quality_to_step16 = lambda q, s16=s16: s16
            vals = [evaluate.psnr(np.asarray(im), np.asarray(codec.decode(codec.encode(im, quality=50))))
                    for im in images]
            out[s16] = float(np.mean(vals))
            print(f"step16 {s16}: {out[s16]:.2f} dB", flush=True)
    finally:
        encoder.quality_to_step16 = original
    return out


def knots(jpeg: dict[int, float], sae: dict[int, float]) -> list[int]:
    s = np.array(sorted(sae))
    p = np.array([sae[k] for k in s])  # falls as the step grows
    ks = []
    for q in range(0, KNEE + 1, KNOT_STEP):
        t = jpeg[q]
        ks.append(int(round(2 ** np.interp(-t, -p, np.log2(s)))))
    n = (100 - KNEE) // KNOT_STEP
    ks += [int(round(2 ** (np.log2(ks[-1]) + (np.log2(FINEST_STEP16) - np.log2(ks[-1])) * i / n)))
           for i in range(1, n + 1)]
    return ks


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images_dir")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    images = [Image.open(Path(args.images_dir) / f).convert("RGB") for f in TRAIN_FILES]
    jpeg = jpeg_psnr(images)
    sae = saepress_psnr(Codec.pretrained(), images)
    ks = knots(jpeg, sae)
    print(f"QUALITY_KNOTS = {tuple(ks)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibrate.json").write_text(json.dumps({"jpeg_psnr": jpeg, "saepress_psnr": sae, "knots": ks}, indent=1))


if __name__ == "__main__":
    main()

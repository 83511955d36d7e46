"""Ablation table: BD-rate vs JPEG from real byte counts and RGB PSNR, with and without rate tools.

    python bench/ablation.py ../shared/data/dev-images [--quick | --subset]

Images: the dev images NOT in sae_model.pretrained.TRAIN_FILES (all of them, full size), or
--subset: every third one from the second (the 5 images of rd.py --quick) at full size, or
--quick: those 5 as 384x384 centre crops with shorter SAE training. Writes bench/results/ablation.json.

Rows (every model sees the same 7 training images; see bench/sae_baselines.py for the SAEs):
- DCT control: the mixture codec with one member, the fixed 8x8 DCT (rd.ablation_models).
- L1 overcomplete SAE: 64 -> 256 unit-norm atoms, soft-threshold encoder, seed L1 objective.
- top-k SAE: the same dictionary size, 32 active atoms per block.
- orthonormal mixture K=8: PCA-initialised like the shipped model (rd.ablation_models).
- orthonormal mixture K=16: the shipped model.
The mixture rows share sae_model's coder and tables; the SAE rows keep its colour transform,
4:2:0 chroma, quality -> step map and DC coder, with their own AC coder (sae_baselines.py).

Columns: BD-rate vs JPEG (PIL, 4:2:0, optimised Huffman), computed per image and averaged,
exactly as rd.py does; negative = fewer bytes at equal RGB PSNR.
- "with rate tools": the encoder's defaults (sae_model.EncoderSettings): rounding 0.5 with
  rate-distortion optimised levels and end of block (rdoq), chroma step 0.625 x luma step,
  block-mean step 0.75 x step / 8 and, for the mixtures, the member chosen per block by
  rate-distortion cost (lambda 0.07 step**2 per bit). The SAEs use the rounding and steps only.
- "without": rd.NO_RATE_TOOLS: rounding 0.5 without rdoq, chroma and luma steps equal,
  block-mean step step / 8, mixture member chosen by distortion only (lambda 0).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import rd  # noqa: E402  (also puts the repo root on sys.path)
from sae_baselines import SAECodec, train_sae  # noqa: E402
from sae_model import Codec, evaluate, sample_patches  # noqa: E402
from sae_model.pretrained import TRAIN_FILES, held_out  # noqa: E402

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev-images"


def ablation_models(images_dir: Path, quick: bool) -> dict:
    """Name -> codec, in table order. SAE training: 2000 steps of 1024 blocks (1000 if quick)."""
    shipped = Codec.pretrained()
    mixtures = rd.ablation_models(images_dir, shipped)
    train = [Image.open(images_dir / f).convert("RGB") for f in TRAIN_FILES]
    rng = np.random.default_rng(0)  # the same patches rd.ablation_models builds its models from
    patches = np.concatenate([sample_patches(im, 20_000, rng) for im in train])
    steps = 1000 if quick else 2000
    saes = {name: SAECodec(train_sae(kind, patches, steps), train, shipped)
            for name, kind in (("L1 overcomplete SAE (4x)", "l1"), ("top-k SAE (4x, k=32)", "topk"))}
    names = list(mixtures)
    return {names[0]: mixtures[names[0]], **saes, **{n: mixtures[n] for n in names[1:]}}


def ablation_table(images, quick: bool, images_dir=DEFAULT_IMAGES, log=print) -> list[dict]:
    """One dict per row: model, bd_rate_vs_jpeg {"with_rate_tools", "without"} and the mean
    (bpp, psnr) curve of each setting."""
    torch.set_num_threads(1)
    jpeg = evaluate.reference_curve("jpeg", images, evaluate.QUALITIES["jpeg"])
    rows = []
    for name, model in ablation_models(Path(images_dir), quick).items():
        row = {"model": name, "bd_rate_vs_jpeg": {}, "mean_curve": {}}
        for col, settings in (("with_rate_tools", None), ("without", rd.NO_RATE_TOOLS)):
            t0 = time.perf_counter()
            label = f"{name} {col}"
            cur = evaluate.codec_curve(model, images, evaluate.QUALITIES["saepress"], name=label, settings=settings)
            entry = evaluate.summarise(jpeg + cur)["codecs"][label]
            row["bd_rate_vs_jpeg"][col] = entry["bd_rate_vs_jpeg"]
            row["mean_curve"][col] = {"bpp": entry["bpp"], "psnr": entry["psnr"]}
            log(f"  {label}: {entry['bd_rate_vs_jpeg']:+.1f}% ({time.perf_counter() - t0:.0f}s)")
        rows.append(row)
    return rows


def format_table(rows) -> str:
    dct = rows[0]["bd_rate_vs_jpeg"]["with_rate_tools"]
    lines = [f"{'model':<36} {'with rate tools':>16} {'without':>9} {'rate vs DCT (with)':>19}"]
    for r in rows:
        w, wo = r["bd_rate_vs_jpeg"]["with_rate_tools"], r["bd_rate_vs_jpeg"]["without"]
        lines.append(f"{r['model']:<36} {w:>+15.1f}% {wo:>+8.1f}% {((1 + w / 100) / (1 + dct / 100) - 1) * 100:>+18.1f}%")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images_dir")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="5 held-out images, 384x384 crops")
    mode.add_argument("--subset", action="store_true", help="the same 5 held-out images, full size")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ablation.json"))
    args = ap.parse_args(argv)
    images = []
    for p in held_out(args.images_dir):
        im = Image.open(p).convert("RGB")
        im.filename = p.name
        images.append(im)
    if args.quick or args.subset:
        images = images[1::3]  # rd.py --quick's selection
    if args.quick:
        images = [evaluate.centre_crop(im, 384) for im in images]
    print(f"{len(images)} held-out images{' (384x384 crops)' if args.quick else ''}: "
          f"{', '.join(im.filename for im in images)}")
    rows = ablation_table(images, args.quick, args.images_dir)
    print("\nBD-rate vs JPEG (real bytes, RGB PSNR, per image then averaged; negative = fewer bits)")
    print(format_table(rows))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"images": [im.filename for im in images], "quick": args.quick,
                               "crop": 384 if args.quick else None, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""Rate-distortion benchmark: real byte counts, RGB PSNR, BD-rate vs JPEG, ablation.

    python bench/rd.py ../shared/data/dev-images [--out bench/results] [--quick] [--tools] [--no-ablation]

Only images NOT used to train the shipped model are used (sae_model.pretrained.TRAIN_FILES).
Every codec codes the pixels only (sae_model.evaluate drops the images' ICC profiles: Pillow's JPEG,
WebP and JPEG 2000 writers drop them, AVIF and saepress would store them: skimage_astronaut's
3 KB profile is a fifth of its low-rate saepress file). Without --crop: full-size images.
References: evaluate.REFERENCES and JPEG XL (libjxl effort 7, evaluate.BENCH_REFERENCES).
Writes rd.json and rd.png (and ablation.json, tools.json) under --out and prints the tables.
BD-rates over the whole overlap (~0.1-2.5 bpp) and over LOW_RATES only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from sae_model import Codec, EncoderSettings, TrainConfig, Trainer, evaluate, sample_patches  # noqa: E402
from sae_model.pretrained import TRAIN_FILES, held_out  # noqa: E402

LOW_RATES = (0.1, 0.6)
REFS = ("jpeg", "webp", "jpeg2000", "avif", "jpegxl")
# format v3's coding tools, each alone and together (bench --tools)
TOOL_ROWS = {"no v3 tool": dict(smooth=False, cfl=False, restoration=False),
             "DC-smooth prediction": dict(cfl=False, restoration=False),
             "chroma from luma": dict(smooth=False, restoration=False),
             "restoration filter": dict(smooth=False, cfl=False),
             "all three (shipped)": {}}
# "without rate tools": plain rounding, member by distortion only, equal steps
NO_RATE_TOOLS = EncoderSettings(rounding=0.5, lam=0.0, rdoq=False, chroma_ratio64=64, dc_ratio64=8)


def ablation_models(images_dir: Path, shipped: Codec) -> dict:
    """Models built the same way as the shipped one but with other K; tables are shared."""
    rng = np.random.default_rng(0)
    patches = np.concatenate([sample_patches(Image.open(images_dir / f).convert("RGB"), 20_000, rng)
                              for f in TRAIN_FILES])
    tables = {k: shipped.weights[k] for k in ("ac_table", "dc_table", "esc_table")}
    out = {}
    for name, K in (("DCT control (K=1)", 1), ("orthonormal mixture K=8", 8)):
        t = Trainer(TrainConfig(K=K), device="cpu")
        t.initialize(patches)
        out[name] = t.to_codec(tables)
    out[f"orthonormal mixture K={shipped.config['K']} (shipped)"] = shipped
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("images_dir")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--quick", action="store_true", help="every third image, centre crops of 384x384")
    ap.add_argument("--crop", type=int, default=0, help="centre crops of CROP x CROP of every image")
    ap.add_argument("--no-ablation", action="store_true")
    ap.add_argument("--tools", action="store_true", help="also each format v3 tool alone and together")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = held_out(args.images_dir)
    images = [Image.open(p).convert("RGB") for p in paths]
    for im, p in zip(images, paths):
        im.filename = p.name
    if args.quick:
        images = [evaluate.centre_crop(im, 384) for im in images[1::3]]
    elif args.crop:
        images = [evaluate.centre_crop(im, args.crop) for im in images]
    print(f"{len(images)} held-out images: {', '.join(im.filename for im in images)}")
    codec = Codec.pretrained()
    curves = []
    t0 = time.perf_counter()
    curves += evaluate.codec_curve(codec, images, evaluate.QUALITIES["saepress"])
    for name in evaluate.REFERENCES + evaluate.BENCH_REFERENCES:
        curves += evaluate.reference_curve(name, images, evaluate.QUALITIES[name])
    summary = evaluate.summarise(curves)
    print(f"({time.perf_counter() - t0:.0f}s)\n\nBD-rate (per image, averaged; negative = fewer bits than the row's reference)")
    print(f"{'codec':<10} " + " ".join(f"{'vs ' + r:>12}" for r in REFS) + "   (in 0.1-0.6 bpp:"
          + " ".join(f"{'vs ' + r:>12}" for r in REFS) + ")")
    for name in summary["codecs"]:
        row = [_bd(curves, ref, name) for ref in REFS]
        low = [_bd(curves, ref, name, LOW_RATES) for ref in REFS]
        summary["codecs"][name]["bd_rate_vs"] = dict(zip(REFS, row))
        summary["codecs"][name]["bd_rate_low_rates_vs"] = dict(zip(REFS, low))
        print(f"{name:<10} " + " ".join(f"{v:>+11.1f}%" for v in row) + "                  "
              + " ".join(f"{v:>+11.1f}%" for v in low))
    (out / "rd.json").write_text(json.dumps({"summary": summary, "curves": curves}, indent=1))
    evaluate.rd_plot(summary, out / "rd.png")
    print(f"\nwrote {out / 'rd.json'} and {out / 'rd.png'}", flush=True)
    if args.tools:
        tools_ablation(codec, images, curves, out)
    if args.no_ablation:
        return
    print("\nAblation: BD-rate vs JPEG (same entropy coder, tables and deblocking; 'rate tools' ="
          " RD-optimised levels and member choice, chroma step 0.625, DC step 0.75)")
    print(f"{'model':<40} {'with rate tools':>16} {'without':>10}")
    jpeg = [r for r in curves if r["codec"] == "jpeg"]
    table = {}
    for name, model in ablation_models(Path(args.images_dir), codec).items():
        row = []
        for tools in (True, False):
            label = f"{name} {'tools' if tools else 'plain'}"
            settings = None if tools else NO_RATE_TOOLS
            cur = evaluate.codec_curve(model, images, evaluate.QUALITIES["saepress"], name=label, settings=settings)
            row.append(evaluate.summarise(jpeg + cur)["codecs"][label]["bd_rate_vs_jpeg"])
        table[name] = row
        print(f"{name:<40} {row[0]:>+15.1f}% {row[1]:>+9.1f}%")
    dct = table["DCT control (K=1)"][0]
    for name, row in table.items():
        print(f"  {name}: {((1 + row[0] / 100) / (1 + dct / 100) - 1) * 100:+.1f}% rate vs the DCT control")
    print("seed L1 overcomplete SAE, top-k SAE: see bench/ablation.py (their coder: bench/sae_baselines.py)")
    (out / "ablation.json").write_text(json.dumps(table, indent=1))


def tools_ablation(codec, images, curves, out: Path) -> None:
    """Each v3 tool alone and together: BD-rate vs the references (and vs no tool), encode and
    decode MP/s of the whole curve (this machine, one thread)."""
    print("\nFormat v3 tools (BD-rate; 0.1-2.5 bpp, then 0.1-0.6 bpp)")
    print(f"{'tools':<22} {'vs no tool':>11} {'vs JPEG':>9} {'vs J2K':>8} {'vs AVIF':>8} |"
          f" {'vs JPEG':>8} {'vs J2K':>8} {'vs AVIF':>8} | {'enc MP/s':>8} {'dec MP/s':>8}")
    refs = [r for r in curves if r["codec"] in REFS]
    table, base = {}, None
    for name, tools in TOOL_ROWS.items():
        cur, mp, enc_s, dec_s = _timed_curve(codec, images, name, EncoderSettings(**tools))
        base = cur if base is None else base
        both = refs + base + cur
        row = {"vs_no_tool": _bd(both, "no v3 tool", name),
               "full": {r: _bd(both, r, name) for r in ("jpeg", "jpeg2000", "avif")},
               "low": {r: _bd(both, r, name, LOW_RATES) for r in ("jpeg", "jpeg2000", "avif")},
               "encode_mp_s": mp / enc_s, "decode_mp_s": mp / dec_s}
        table[name] = row
        print(f"{name:<22} {row['vs_no_tool']:>+10.1f}% " + " ".join(f"{v:>+7.1f}%" for v in row["full"].values())
              + " | " + " ".join(f"{v:>+7.1f}%" for v in row["low"].values())
              + f" | {row['encode_mp_s']:>8.2f} {row['decode_mp_s']:>8.1f}", flush=True)
    (out / "tools.json").write_text(json.dumps(table, indent=1))


def _timed_curve(codec, images, name, settings):
    cur, mp, enc_s, dec_s = [], 0.0, 0.0, 0.0
    for im in images:
        ref = np.asarray(im)
        for q in evaluate.QUALITIES["saepress"]:
            t0 = time.perf_counter()
            data = codec.encode(im, quality=q, settings=settings)
            t1 = time.perf_counter()
            dec = np.asarray(codec.decode(data))
            dec_s += time.perf_counter() - t1
            enc_s += t1 - t0
            mp += ref.shape[0] * ref.shape[1] / 1e6
            cur.append({"codec": name, "image": im.filename, "quality": q, "bytes": len(data),
                        "bpp": len(data) * 8 / (ref.shape[0] * ref.shape[1]), "psnr": evaluate.psnr(ref, dec)})
    return cur, mp, enc_s, dec_s


def _bd(curves, ref, test, bpp_range=None) -> float:
    vals = []
    for img in sorted({r["image"] for r in curves}):
        a = [(r["bpp"], r["psnr"]) for r in curves if r["codec"] == ref and r["image"] == img]
        b = [(r["bpp"], r["psnr"]) for r in curves if r["codec"] == test and r["image"] == img]
        v = evaluate.bd_rate(a, b, bpp_range)
        if np.isfinite(v):
            vals.append(v)
    return float(np.mean(vals)) if vals else float("nan")


if __name__ == "__main__":
    main()

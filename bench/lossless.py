"""Lossless and JPEG-exact storage: bytes as % of the originals, encode and decode speed, one thread.

    python bench/lossless.py ../shared/data/dev-images [--limit N] [--efforts 3,5,7,9]

Three sets, all made from the images in DIR:
- 8-bit: the images as RGB, 8 bits per sample (originals: the files as given).
- 16-bit: each image 2x2 box-filtered in floating point and stored at 16 bits per sample, like a scanner's or a
  raw converter's 16-bit master (originals: 16-bit PNG, zlib level 9).
- JPEG: each image saved by Pillow at qualities 75, 90 and 95, baseline and progressive, with an EXIF block
  (originals: those JPEG files).
Rows: the shipped engines through their saepress entry points (``lossless.encode`` / ``rebuild`` and
``jpeg_exact.recompress`` / ``rebuild``: each encode includes its verification decode, each decode writes the
rebuilt file) and the anchors through their libraries. Bytes: total stored / total originals. Speed: MB of raw
samples (pixel sets) or of JPEG files (JPEG set) per second, total over the set. Lepton (lepton-jpeg-python) is
measured when it is importable (it is not a dependency; ``pip install lepton-jpeg-python`` to include it).
JSON: bench/results/lossless.json.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import imagecodecs  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from sae_model import jpeg_exact, lossless  # noqa: E402
from sae_model.errors import NotExactError  # noqa: E402

JPEG_QUALITIES = (75, 90, 95)


def to_16bit(rgb: np.ndarray) -> np.ndarray:
    h, w = (rgb.shape[0] // 2) * 2, (rgb.shape[1] // 2) * 2
    box = rgb[:h, :w].astype(np.float64).reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
    return np.round(box * (65535 / 255)).astype(np.uint16)


def jpeg_file(rgb: np.ndarray, quality: int, progressive: bool) -> bytes:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0132] = "saepress bench", "lossless.py", "2026:01:01 00:00:00"
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality, progressive=progressive, exif=exif.tobytes())
    return buf.getvalue()


def png8(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def pillow_decode(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as im:
        im.load()


def jxl(effort: int):
    return (lambda a: imagecodecs.jpegxl_encode(a, lossless=True, effort=effort, numthreads=1),
            lambda d: imagecodecs.jpegxl_decode(d, numthreads=1))


def measure(name: str, items: list, encode, decode) -> dict:
    """items: [(original bytes, input, raw bytes)]; encode(input) -> stored bytes or None (refused); decode(stored)."""
    stored = original = raw = 0
    t_enc = t_dec = 0.0
    refused = 0
    for orig, value, raw_bytes in items:
        t = time.perf_counter()
        out = encode(value)
        t_enc += time.perf_counter() - t
        if out is None:
            refused += 1
            out = orig
        else:
            t = time.perf_counter()
            decode(out)
            t_dec += time.perf_counter() - t
        stored += len(out)
        original += len(orig)
        raw += raw_bytes
    row = {"codec": name, "items": len(items), "refused": refused, "percent": 100 * stored / original,
           "stored_bytes": stored, "original_bytes": original,
           "encode_mb_s": raw / 1e6 / t_enc if t_enc else None, "decode_mb_s": raw / 1e6 / t_dec if t_dec else None}
    print(f"  {name:<34} {row['percent']:7.2f}% {row['encode_mb_s'] or 0:9.2f} {row['decode_mb_s'] or 0:9.2f}"
          f"{'' if not refused else f'   ({refused} refused, kept verbatim)'}", flush=True)
    return row


def refusing(fn):
    def run(value):
        try:
            return fn(value)
        except NotExactError:
            return None
    return run


def header(title: str) -> None:
    print(f"\n{title}\n  {'codec':<34} {'bytes':>8} {'enc MB/s':>9} {'dec MB/s':>9}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--limit", type=int, default=None, help="first N images only (default: all)")
    ap.add_argument("--efforts", default="3,5,9", help="extra JPEG XL efforts to measure on the 8-bit set")
    args = ap.parse_args()
    paths = sorted(Path(args.dir).glob("*.png"))[:args.limit]
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    print(f"{len(images)} images from {args.dir}, one thread; bytes = stored / originals; "
          "speed = MB of raw samples (JPEG set: of JPEG files) per second")
    results = {"images": [p.name for p in paths], "sets": {}}
    config = lossless.LosslessConfig()

    header(f"8-bit RGB ({sum(a.size for a in images) / 3e6:.1f} MP; originals: the PNG files as given)")
    set8 = [(p.read_bytes(), a, a.nbytes) for p, a in zip(paths, images)]
    files8 = [(orig, orig, raw) for orig, _, raw in set8]
    rows = [measure(f"saepress lossless (jxl e{config.effort})", files8,
                    refusing(lambda d: lossless.encode(d, config)[0]), lossless.rebuild)]
    rows.append(measure("PNG optimize (Pillow)", set8, png8, pillow_decode))
    rows.append(measure("WebP lossless (method 6, q100)", set8,
                        lambda a: imagecodecs.webp_encode(a, lossless=True, level=100, method=6, numthreads=1),
                        imagecodecs.webp_decode))
    for effort in sorted({7, *map(int, args.efforts.split(","))}):
        rows.append(measure(f"JPEG XL lossless e{effort}", set8, *jxl(effort)))
    results["sets"]["8bit"] = rows

    header("16-bit RGB (2x2 box-filtered masters; originals: 16-bit PNG, zlib level 9)")
    masters = [to_16bit(a) for a in images]
    set16 = [(imagecodecs.png_encode(m, level=9), m, m.nbytes) for m in masters]
    files16 = [(orig, orig, raw) for orig, _, raw in set16]
    rows = [measure(f"saepress lossless (jxl e{config.effort})", files16,
                    refusing(lambda d: lossless.encode(d, config)[0]), lossless.rebuild)]
    rows.append(measure("PNG 16-bit (zlib level 9)", set16, lambda m: imagecodecs.png_encode(m, level=9),
                        imagecodecs.png_decode))
    rows.append(measure("TIFF deflate + predictor", set16,
                        lambda m: imagecodecs.tiff_encode(m, compression="deflate", predictor=True),
                        imagecodecs.tiff_decode))
    rows.append(measure("JPEG XL lossless e7", set16, *jxl(7)))
    results["sets"]["16bit"] = rows

    try:
        import lepton_jpeg_python as lepton
    except ImportError:
        lepton = None
    results["sets"]["jpeg"] = {}
    for quality in JPEG_QUALITIES:
        for progressive in (False, True):
            kind = f"q{quality} {'progressive' if progressive else 'baseline'}"
            jpegs = [jpeg_file(a, quality, progressive) for a in images]
            header(f"JPEG {kind} with EXIF ({sum(map(len, jpegs)) / 1e6:.1f} MB)")
            items = [(j, j, len(j)) for j in jpegs]
            rows = [measure("saepress jpeg-exact (JPEG XL jbrd)", items, refusing(jpeg_exact.recompress),
                            jpeg_exact.rebuild)]
            if lepton is not None:
                rows.append(measure("Lepton (lepton-jpeg-python)", items, lepton_checked(lepton),
                                    lepton.decompress_bytes))
            results["sets"]["jpeg"][kind] = rows
    out = Path(__file__).parent / "results" / "lossless.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"\nwrote {out}")


def lepton_checked(lepton):
    def encode(data: bytes):
        stored = bytes(lepton.compress_bytes(data))
        return stored if bytes(lepton.decompress_bytes(stored)) == data else None
    return encode


if __name__ == "__main__":
    main()

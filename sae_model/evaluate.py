"""Rate-distortion evaluation: real byte counts, RGB 8-bit PSNR, Bjontegaard delta rate."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

REFERENCES = ("jpeg", "webp", "jpeg2000", "avif")
# measured by bench/rd.py beside REFERENCES (slower to encode: not in every evaluation)
BENCH_REFERENCES = ("jpegxl",)
# Quality settings per codec that span the same PSNR range (BD-rate compares over the overlap), shared by
# `saepress evaluate`, bench/rd.py and the training flow's validation.
QUALITIES = {
    "saepress": (10, 20, 35, 50, 70, 85, 90, 95),  # 0.1 to ~2.5 bpp: the 4:2:0 range
    "jpeg": (10, 20, 30, 45, 60, 75, 85, 92),
    "webp": (10, 20, 35, 50, 65, 80, 90, 95),
    "jpeg2000": (5, 15, 25, 35, 45, 55, 65, 75),
    "avif": (10, 25, 40, 55, 65, 75, 85, 92),
    "jpegxl": (2, 8, 20, 35, 50, 70, 85, 93),  # libjxl quality ("level"), effort 7
}


def psnr(original: np.ndarray, decoded: np.ndarray) -> float:
    a = np.asarray(original, np.float64)
    b = np.asarray(decoded, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def bd_rate(ref_points, test_points, bpp_range=None) -> float:
    """Bjontegaard delta rate in percent (negative = test needs fewer bits), cubic fit of
    log-rate against PSNR over the overlapping PSNR interval; bpp_range (lo, hi) narrows that
    interval to where both curves (piecewise linear in log-rate) lie within those rates."""
    r = np.array(sorted(ref_points, key=lambda p: p[1]), np.float64)
    t = np.array(sorted(test_points, key=lambda p: p[1]), np.float64)
    r, t = r[np.isfinite(r).all(1)], t[np.isfinite(t).all(1)]
    if len(r) < 4 or len(t) < 4:
        return float("nan")
    lo, hi = max(r[:, 1].min(), t[:, 1].min()), min(r[:, 1].max(), t[:, 1].max())
    if bpp_range is not None:
        for pts in (r, t):
            order = np.argsort(pts[:, 0])
            at = np.interp(np.log(bpp_range), np.log(pts[order, 0]), pts[order, 1])
            lo, hi = max(lo, at[0]), min(hi, at[1])
    if hi <= lo:
        return float("nan")
    def integral(pts):
        poly = np.polyint(np.polyfit(pts[:, 1], np.log(pts[:, 0]), 3))
        return np.polyval(poly, hi) - np.polyval(poly, lo)
    return float((np.exp((integral(t) - integral(r)) / (hi - lo)) - 1) * 100)


def _load(image) -> tuple[str, Image.Image]:
    """The image's name and an RGB copy of its pixels only. Pillow's JPEG, WebP and JPEG 2000 writers drop an ICC
    profile, saepress and AVIF keep it: a 3 KB profile on a small image would be charged to them alone."""
    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            label, rgb = Path(image).name, im.convert("RGB")
    else:
        label, rgb = getattr(image, "filename", "") or "image", image.convert("RGB")
    rgb.info.clear()
    return label, rgb


def centre_crop(image: Image.Image, size: int) -> Image.Image:
    """The centre size x size of image, or as much of it as the image has (Pillow pads a larger box with black);
    the crop keeps the image's .filename, which tells images apart in a summary."""
    w, h = min(size, image.width), min(size, image.height)
    left, top = (image.width - w) // 2, (image.height - h) // 2
    crop = image.crop((left, top, left + w, top + h))
    crop.filename = getattr(image, "filename", "")
    return crop


def codec_curve(codec, images, qualities, name: str = "saepress", settings=None) -> list[dict]:
    """settings: an encoder.EncoderSettings (None: the codec's defaults)."""
    out = []
    for image in images:
        label, im = _load(image)
        ref = np.asarray(im)
        for q in qualities:
            data = codec.encode(im, quality=q) if settings is None else codec.encode(im, quality=q, settings=settings)
            dec = np.asarray(codec.decode(data).convert("RGB"))
            out.append(_record(name, label, q, len(data), ref, dec))
    return out


def reference_curve(name: str, images, qualities) -> list[dict]:
    if name not in REFERENCES + BENCH_REFERENCES:
        raise ValueError(f"unknown reference codec {name!r}")
    out = []
    for image in images:
        label, im = _load(image)
        ref = np.asarray(im)
        for q in qualities:
            if name == "jpegxl":
                import imagecodecs  # lazy: only the benchmark measures JPEG XL
                data = imagecodecs.jpegxl_encode(ref, level=q, effort=7, numthreads=1)
                dec = imagecodecs.jpegxl_decode(data, numthreads=1)
            else:
                buf = io.BytesIO()
                _save_reference(name, im, q, buf)
                data = buf.getvalue()
                with Image.open(io.BytesIO(data)) as d:
                    dec = np.asarray(d.convert("RGB"))
            out.append(_record(name, label, q, len(data), ref, dec))
    return out


def _save_reference(name: str, im: Image.Image, q: int, buf) -> None:
    if name == "jpeg":
        im.save(buf, format="JPEG", quality=q, subsampling=2, optimize=True)
    elif name == "webp":
        im.save(buf, format="WEBP", quality=q, method=6)
    elif name == "avif":
        im.save(buf, format="AVIF", quality=q, speed=4)
    else:  # JPEG 2000, rates mode: quality q -> target bits per pixel 0.1 * 2**(q/20)
        ratio = 24.0 / (0.1 * 2 ** (q / 20))
        im.save(buf, format="JPEG2000", quality_mode="rates", quality_layers=[ratio],
                irreversible=True, mct=1)


def _record(codec, image, q, nbytes, ref, dec) -> dict:
    h, w = ref.shape[:2]
    return {"codec": codec, "image": image, "quality": q, "bytes": nbytes,
            "bpp": nbytes * 8 / (h * w), "psnr": psnr(ref, dec)}


def summarise(curves) -> dict:
    """curves: flat list of records, or {codec: records}. Mean curve per codec and quality,
    BD-rate vs JPEG per image (averaged) and of the mean curves."""
    if isinstance(curves, dict):
        curves = [r for recs in curves.values() for r in recs]
    by_codec: dict[str, list[dict]] = {}
    for r in curves:
        by_codec.setdefault(r["codec"], []).append(r)
    summary = {"codecs": {}}
    for name, recs in by_codec.items():
        qs = sorted({r["quality"] for r in recs})
        mean = [(float(np.mean([r["bpp"] for r in recs if r["quality"] == q])),
                 float(np.mean([min(r["psnr"], 100.0) for r in recs if r["quality"] == q]))) for q in qs]
        summary["codecs"][name] = {"quality": qs, "bpp": [m[0] for m in mean], "psnr": [m[1] for m in mean],
                                   "images": sorted({r["image"] for r in recs})}
    ref = by_codec.get("jpeg")
    for name, recs in by_codec.items():
        entry = summary["codecs"][name]
        if ref is None:
            continue
        per = {}
        for img in entry["images"]:
            a = [(r["bpp"], r["psnr"]) for r in ref if r["image"] == img]
            b = [(r["bpp"], r["psnr"]) for r in recs if r["image"] == img]
            if a and b:
                per[img] = bd_rate(a, b)
        vals = [v for v in per.values() if np.isfinite(v)]
        entry["bd_rate_vs_jpeg_per_image"] = per
        entry["bd_rate_vs_jpeg"] = float(np.mean(vals)) if vals else float("nan")
        jm = summary["codecs"]["jpeg"]
        entry["bd_rate_vs_jpeg_mean_curve"] = bd_rate(list(zip(jm["bpp"], jm["psnr"])),
                                                      list(zip(entry["bpp"], entry["psnr"])))
    return summary


def rd_plot(summary: dict, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, c in summary["codecs"].items():
        bd = c.get("bd_rate_vs_jpeg")
        label = name if bd is None or name == "jpeg" else f"{name} ({bd:+.1f}% vs JPEG)"
        ax.plot(c["bpp"], c["psnr"], marker="o", ms=3, label=label)
    ax.set_xlabel("bits per pixel (real bytes)")
    ax.set_ylabel("RGB PSNR (dB)")
    ax.set_xlim(0, 3)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

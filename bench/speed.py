"""Single-thread speed at about 1 bpp: encode and decode megapixels per second, median over images.

    python bench/speed.py ../shared/data/dev-images [N]   (N: only the first N held-out images)

Each codec at the setting that gives about 1 bpp on the held-out photos (bench/rd.py's curves):
saepress quality 85, JPEG 60, WebP 80, AVIF 65 (speed 4), JPEG 2000 at 1 bpp.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import io  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from sae_model import Codec  # noqa: E402
from sae_model.pretrained import held_out  # noqa: E402


def best_of(fn, repeat=3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def pillow(fmt, **kw):
    def enc(im):
        buf = io.BytesIO()
        im.save(buf, format=fmt, **kw)
        return buf.getvalue()

    def dec(data):
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    return enc, dec


def main() -> None:
    torch.set_num_threads(1)
    images = [Image.open(p).convert("RGB") for p in held_out(sys.argv[1])][:int(sys.argv[2]) if len(sys.argv) > 2 else None]
    codec = Codec.pretrained()
    codecs = {"saepress": (lambda im: codec.encode(im, quality=85), codec.decode),
              "jpeg": pillow("JPEG", quality=60, subsampling=2, optimize=True),
              "webp": pillow("WEBP", quality=80, method=6),
              "avif": pillow("AVIF", quality=65, speed=4),
              "jpeg2000": pillow("JPEG2000", quality_mode="rates", quality_layers=[24.0], irreversible=True, mct=1)}
    print(f"{len(images)} images, one thread, about 1 bpp, best of 3 per image, median over images")
    print(f"{'codec':<10} {'encode MP/s':>12} {'decode MP/s':>12} {'bpp':>6}")
    for name, (enc, dec) in codecs.items():
        e, d, b = [], [], []
        for im in images:
            mp = im.size[0] * im.size[1] / 1e6
            data = enc(im)
            e.append(mp / best_of(lambda: enc(im)))
            d.append(mp / best_of(lambda: dec(data)))
            b.append(len(data) * 8 / (mp * 1e6))
        print(f"{name:<10} {np.median(e):>12.2f} {np.median(d):>12.2f} {np.mean(b):>6.2f}", flush=True)


if __name__ == "__main__":
    main()

"""Single-thread speed at quality 50: encode and decode megapixels per second, median over images.

    python bench/speed.py ../shared/data/dev-images
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
    images = [Image.open(p).convert("RGB") for p in held_out(sys.argv[1])]
    codec = Codec.pretrained()
    codecs = {"saepress": (lambda im: codec.encode(im, quality=50), codec.decode),
              "jpeg": pillow("JPEG", quality=50, subsampling=2, optimize=True),
              "webp": pillow("WEBP", quality=50, method=6)}
    print(f"{len(images)} images, one thread, quality 50, best of 3 per image, median over images")
    print(f"{'codec':<10} {'encode MP/s':>12} {'decode MP/s':>12}")
    for name, (enc, dec) in codecs.items():
        e, d = [], []
        for im in images:
            mp = im.size[0] * im.size[1] / 1e6
            data = enc(im)
            e.append(mp / best_of(lambda: enc(im)))
            d.append(mp / best_of(lambda: dec(data)))
        print(f"{name:<10} {np.median(e):>12.2f} {np.median(d):>12.2f}")


if __name__ == "__main__":
    main()

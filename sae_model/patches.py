"""Training patches: random 8x8 windows in full-range YCbCr, channel-major."""

from __future__ import annotations

import numpy as np
from PIL import Image

from . import imageio

PATCH_SPEC = {
    "patch_size": 8,
    "channels": 3,
    "color_space": "YCbCr",
    "layout": "channel-major: Y (8x8 row-major), then Cb, then Cr",
    "value_range": [0.0, 255.0],
    "dim": 192,
    "version": 1,
}


def sample_patches(image: Image.Image, count: int, rng: np.random.Generator) -> np.ndarray:
    """Up to `count` random 8x8 windows of `image` as (n, 192) float32; grey images give Cb=Cr=128."""
    prep = imageio.prepare(image)
    px = prep.pixels
    if px.shape[2] == 1:
        px = np.repeat(px, 3, axis=2)
    h, w = px.shape[:2]
    ps = PATCH_SPEC["patch_size"]
    if h < ps or w < ps or count <= 0:
        return np.zeros((0, PATCH_SPEC["dim"]), np.float32)
    n = min(count, (h - ps + 1) * (w - ps + 1))
    flat = rng.choice((h - ps + 1) * (w - ps + 1), size=n, replace=False)
    ys, xs = flat // (w - ps + 1), flat % (w - ps + 1)
    ycc = imageio.rgb_to_ycbcr(px)
    win = np.stack([ycc[y:y + ps, x:x + ps] for y, x in zip(ys.tolist(), xs.tolist())])
    return np.ascontiguousarray(win.transpose(0, 3, 1, 2).reshape(n, -1)).astype(np.float32)


def patches_to_blocks(patches: np.ndarray) -> np.ndarray:
    """(n, 192) patches -> (3n, 64) blocks: every channel is one training block."""
    return np.asarray(patches, np.float64).reshape(-1, PATCH_SPEC["patch_size"] ** 2)

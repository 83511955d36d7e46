"""Pictures of the model (for MLflow artifacts and the README)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def atoms_image(codec, scale: int = 3) -> Image.Image:
    """One row per mixture member: its 64 atoms (constant first), each contrast-stretched."""
    bases = np.asarray(codec.arrays.bases, np.float64)  # (K, 64, 64)
    K = bases.shape[0]
    cell = 9
    canvas = np.full((K * cell + 1, 64 * cell + 1), 255, np.uint8)
    for k in range(K):
        for j in range(64):
            a = bases[k, :, j].reshape(8, 8)
            span = np.abs(a).max() or 1.0
            canvas[k * cell + 1:k * cell + 9, j * cell + 1:j * cell + 9] = np.rint(127.5 + 127.5 * a / span)
    return Image.fromarray(canvas, "L").resize((canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST)

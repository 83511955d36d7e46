"""Archives of one kind of content for the training benchmarks, with held-out images of the same kind.

`documents`: generated page scans (text lines on uneven paper, blur, sensor noise), where the shipped default
(trained on photographs) is weakest. `photos`: 256 px tiles of the dev photographs that the default never saw
(`sae_model.pretrained.held_out`); training and held-out tiles come from different photographs.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fixtures_archives import document_page  # noqa: E402

DEV_IMAGES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dev-images"
CONTENTS = ("documents", "photos")
TILE = 256


def photo_tiles(paths: list[Path]) -> list:
    """Non-overlapping TILE x TILE tiles of each photograph, interleaved across photographs."""
    from PIL import Image

    per_photo = []
    for path in paths:
        image = Image.open(path).convert("RGB")
        per_photo.append([image.crop((x, y, x + TILE, y + TILE))
                          for y in range(0, image.height - TILE + 1, TILE)
                          for x in range(0, image.width - TILE + 1, TILE)])
    return [tiles[i] for i in range(max(map(len, per_photo))) for tiles in per_photo if i < len(tiles)]


def images(content: str, count: int, held_out: bool, size: int = 320, dev_images: Path = DEV_IMAGES) -> list:
    """``count`` images of ``content``; ``held_out`` ones never overlap the training ones (other seed/photos)."""
    if content == "documents":
        rng = np.random.default_rng(1 if held_out else 0)
        return [document_page(rng, size) for _ in range(count)]
    if content == "photos":
        from sae_model.pretrained import held_out as unseen

        photos = unseen(dev_images)
        if len(photos) < 6:
            raise SystemExit(f"photos need the dev images (at least 6 outside the default's training set) in "
                             f"{dev_images}; pass --dev-images DIR")
        tiles = photo_tiles(photos[-4:] if held_out else photos[:-4])
        if len(tiles) < count:
            raise SystemExit(f"only {len(tiles)} photo tiles for {count} {'held-out' if held_out else 'training'} "
                             "images; ask for fewer")
        return tiles[:count]
    raise ValueError(f"unknown content {content!r}; one of {CONTENTS}")


def write(images_: list, folder: Path, stem: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images_):
        image.save(folder / f"{stem}_{i:03d}.png")
    return folder

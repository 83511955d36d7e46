"""Generated test archives: good images, duplicates and every kind of bad file, with the catalog rows expected.

Import from tests as ``from fixtures_archives import ...`` (pytest puts tests/ on sys.path); the benchmark
imports ``tests.fixtures_archives`` from the repository root.

``common_cases()`` is the content every source kind holds; ``tar_extras()``, ``zip_extras()`` and
``folder_extras()`` add what only that kind can hold (unsafe names, links, fifos). ``expected_rows(cases)``
gives the exact catalog rows, less ``reason`` (people's text, checked separately).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

# Files above this are rejected unread in the tests (the "member too large" case is just over it).
TEST_MAX_BYTES = 64 * 1024


@dataclass(frozen=True)
class Case:
    path: str
    data: bytes
    status: str  # ok | duplicate | rejected
    error: str | None = None
    info: dict = field(default_factory=dict)  # format, mode, width, height, frames, animated, orientation
    read: bool = True  # False: rejected before reading, so no id
    kind: str = "file"  # file | symlink | hardlink | fifo | dirlink
    target: str | None = None  # for links


def _noise(width: int, height: int, seed: int, channels: int = 3) -> np.ndarray:
    """Smooth gradient plus noise: looks like a photo to a codec, differs per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = (x * 255 / max(width - 1, 1) + y * 128 / max(height - 1, 1))[..., None] * rng.uniform(0.3, 1, channels)
    pixels = base + rng.normal(0, 12, (height, width, channels))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def document_page(rng: np.random.Generator, size: int) -> Image.Image:
    """A page scan: dark lines of text-like strings on slightly uneven paper, a little blur and sensor noise.

    Content far from the photographs the shipped default model was trained on (its weakest kind).
    """
    from PIL import ImageDraw, ImageFilter, ImageFont

    page = Image.new("L", (size, size), int(rng.integers(225, 250)))
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=int(rng.integers(11, 18)))
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz      ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;"))
    y = int(rng.integers(4, 20))
    while y < size - 16:
        line = "".join(rng.choice(letters, int(rng.integers(20, 60))))
        draw.text((int(rng.integers(4, 30)), y), line, fill=int(rng.integers(10, 70)), font=font)
        y += int(rng.integers(16, 26))
    page = page.filter(ImageFilter.GaussianBlur(0.6))
    noisy = np.asarray(page, np.float32) + rng.normal(0, 3, (size, size))
    tint = np.array([1.0, 0.98, 0.93]) * rng.uniform(0.95, 1.0)  # paper is rarely pure grey
    return Image.fromarray(np.clip(noisy[..., None] * tint, 0, 255).astype(np.uint8), "RGB")


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def rgb_png(width: int, height: int, seed: int) -> bytes:
    return encode(Image.fromarray(_noise(width, height, seed)), "PNG")


def rgb_jpeg(width: int, height: int, seed: int, orientation: int | None = None) -> bytes:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    return encode(Image.fromarray(_noise(width, height, seed)), "JPEG", quality=90, exif=exif)


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (24, 20), colour) for colour in ("red", "green", "blue")]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def png_16bit() -> bytes:
    rng = np.random.default_rng(16)
    return encode(Image.fromarray(rng.integers(0, 65535, (20, 30), dtype=np.uint16)), "PNG")


def cmyk_jpeg() -> bytes:
    return encode(Image.fromarray(_noise(32, 24, 5)).convert("CMYK"), "JPEG", quality=90)


def palette_png_with_alpha() -> bytes:
    image = Image.fromarray(_noise(28, 22, 6)).quantize(16)
    return encode(image, "PNG", transparency=0)


def truncated_png() -> bytes:
    data = rgb_png(64, 48, 7)
    return data[: len(data) // 2]


def flipped_jpeg() -> bytes:
    """A JPEG whose Huffman table is garbled: the header parses, the pixels cannot be decoded."""
    data = bytearray(rgb_jpeg(48, 40, 8))
    start = data.index(b"\xff\xc4") + 4
    for i in range(start, start + 26):
        data[i] ^= 0xFF
    return bytes(data)


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims a huge image: only the header may ever be read."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def big_bmp() -> bytes:
    """A valid image just over TEST_MAX_BYTES."""
    return encode(Image.fromarray(_noise(160, 160, 9)), "BMP")


SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>\n'


def _ok(fmt: str, mode: str, width: int, height: int, frames: int = 1, orientation: int = 1) -> dict:
    return {"format": fmt, "mode": mode, "width": width, "height": height, "frames": frames,
            "animated": frames > 1, "orientation": orientation}


def common_cases() -> list[Case]:
    """What every source kind holds, in path order (folder sources list in path order)."""
    red = rgb_png(40, 30, 1)
    truncated = truncated_png()
    return [
        Case("a/photo.jpg", rgb_jpeg(48, 32, 2, orientation=6), "ok", info=_ok("JPEG", "RGB", 48, 32, orientation=6)),
        Case("a/red.png", red, "ok", info=_ok("PNG", "RGB", 40, 30)),
        Case("b/animated.gif", animated_gif(), "ok", info=_ok("GIF", "P", 24, 20, frames=3)),
        Case("b/cmyk.jpg", cmyk_jpeg(), "ok", info=_ok("JPEG", "CMYK", 32, 24)),
        Case("b/deep16.png", png_16bit(), "ok", info=_ok("PNG", "I;16", 30, 20)),
        Case("b/nested/gray.png", encode(Image.fromarray(_noise(20, 20, 3, 1)[..., 0]), "PNG"), "ok",
             info=_ok("PNG", "L", 20, 20)),
        Case("b/palette_alpha.png", palette_png_with_alpha(), "ok", info=_ok("PNG", "P", 28, 22)),
        Case("b/red_copy.png", red, "duplicate", info=_ok("PNG", "RGB", 40, 30)),
        Case("bad/big.bmp", big_bmp(), "rejected", "too_large", read=False),
        Case("bad/bomb.png", bomb_png(), "rejected", "too_large"),
        Case("bad/drawing.svg", SVG, "rejected", "unsupported"),
        Case("bad/empty.png", b"", "rejected", "not_image"),
        Case("bad/flipped.jpg", flipped_jpeg(), "rejected", "corrupt",
             info={"format": "JPEG", "mode": "RGB", "width": 48, "height": 40}),
        Case("bad/notes.jpg", b"shopping list: milk, eggs\n", "rejected", "not_image"),
        Case("bad/truncated.png", truncated, "rejected", "truncated",
             info={"format": "PNG", "mode": "RGB", "width": 64, "height": 48}),
        # Identical broken files both stay rejected: only decodable images are deduplicated.
        Case("bad/truncated_again.png", truncated, "rejected", "truncated",
             info={"format": "PNG", "mode": "RGB", "width": 64, "height": 48}),
    ]


def tar_extras() -> list[Case]:
    red = rgb_png(40, 30, 1)
    return [
        Case("../escape.png", red, "rejected", "unsafe_path", read=False),
        Case("/etc/escape.png", red, "rejected", "unsafe_path", read=False),
        Case("link.png", b"", "rejected", "not_regular", read=False, kind="symlink", target="/etc/passwd"),
        Case("hard.png", b"", "rejected", "not_regular", read=False, kind="hardlink", target="a/red.png"),
    ]


def zip_extras() -> list[Case]:
    red = rgb_png(40, 30, 1)
    return [
        Case("../escape.png", red, "rejected", "unsafe_path", read=False),
        Case("/etc/escape.png", red, "rejected", "unsafe_path", read=False),
        Case("link.png", b"/etc/passwd", "rejected", "not_regular", read=False, kind="symlink"),
    ]


def folder_extras(outside: Path) -> list[Case]:
    """Links and a fifo (sort with the common cases); ``outside`` is a folder outside the source."""
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "secret.png").write_bytes(rgb_png(16, 16, 99))
    return [
        Case("inside_link.png", rgb_png(40, 30, 1), "duplicate", info=_ok("PNG", "RGB", 40, 30),
             kind="symlink", target="a/red.png"),
        Case("b_link", b"", "rejected", "not_regular", read=False, kind="dirlink", target="b/nested"),
        Case("linked_dir", b"", "rejected", "unsafe_path", read=False, kind="dirlink", target=str(outside)),
        Case("outside_link.png", b"", "rejected", "unsafe_path", read=False, kind="symlink",
             target=str(outside / "secret.png")),
        Case("pipe.png", b"", "rejected", "not_regular", read=False, kind="fifo"),
    ]


def expected_rows(cases: list[Case]) -> list[dict]:
    """Catalog rows (without ``reason``) in source order, duplicates pointing at the first ok copy."""
    first: dict[str, str] = {}
    rows = []
    for case in cases:
        digest = hashlib.sha256(case.data).hexdigest() if case.read else None
        duplicate_of = None
        if case.status in ("ok", "duplicate"):
            duplicate_of = first.setdefault(digest, case.path)
            duplicate_of = None if duplicate_of == case.path else duplicate_of
        size = len(case.data) if case.kind == "file" or (case.kind == "symlink" and case.read) else 0
        row = {"id": digest, "path": case.path, "size": size, "status": case.status,
               "duplicate_of": duplicate_of, "format": None, "mode": None, "width": None, "height": None,
               "frames": None, "animated": False, "orientation": None, "error": case.error,
               "warnings": None}
        row.update(case.info)
        rows.append(row)
    return rows


def write_folder(root: Path, cases: list[Case]) -> Path:
    for case in cases:
        target = root / case.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if case.kind == "file":
            target.write_bytes(case.data)
        elif case.kind in ("symlink", "dirlink"):
            os.symlink(case.target if os.path.isabs(case.target) else root / case.target, target)
        elif case.kind == "fifo":
            os.mkfifo(target)
    return root


def write_tar(path: Path, cases: list[Case]) -> Path:
    """Write a tar, compressed according to the suffix (.tar, .tar.gz, .tar.xz ...), members in case order."""
    mode = {".gz": "w:gz", ".tgz": "w:gz", ".xz": "w:xz", ".bz2": "w:bz2"}.get(path.suffix, "w")
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tar:
        for case in cases:
            info = tarfile.TarInfo(case.path)
            info.mtime = 1_700_000_000
            if case.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, case.target
                tar.addfile(info)
            elif case.kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, case.target
                tar.addfile(info)
            else:
                info.size = len(case.data)
                tar.addfile(info, io.BytesIO(case.data))
    return path


def write_zip(path: Path, cases: list[Case]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for case in cases:
            info = zipfile.ZipInfo(case.path, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            if case.kind == "symlink":
                info.create_system = 3  # unix, so external_attr carries the file type
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, case.data)
    return path


def write_fs(fs, root: str, cases: list[Case]) -> str:
    """Put plain-file cases on an fsspec filesystem (memory://, s3://) under ``root``."""
    for case in cases:
        fs.pipe_file(f"{root.rstrip('/')}/{case.path}", case.data)
    return root


def bench_images(count: int, seed: int = 0, duplicate_every: int = 50) -> list[tuple[str, bytes]]:
    """``count`` small PNG and JPEG files (64-256 px) with a duplicate every ``duplicate_every`` files."""
    rng = np.random.default_rng(seed)
    files = []
    for index in range(count):
        if duplicate_every and index % duplicate_every == duplicate_every - 1:
            files.append((f"img/{index:06d}_dup.png", files[index - 1][1]))
            continue
        width, height = (int(v) for v in rng.integers(64, 257, 2))
        image = Image.fromarray(_noise(width, height, seed * 1_000_003 + index))
        if index % 2:
            files.append((f"img/{index:06d}.jpg", encode(image, "JPEG", quality=90)))
        else:
            files.append((f"img/{index:06d}.png", encode(image, "PNG")))
    return files


@contextlib.contextmanager
def local_cluster(workers: int = 1, processes: bool = True):
    """A Dask cluster for flow tests, passed to flows by address (one start for many flows).

    ``processes=False`` keeps workers in the test process, where memory:// files live.
    """
    import distributed

    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1 if processes else 2,
                                  processes=processes, dashboard_address=None,
                                  silence_logs=logging.ERROR) as cluster:
        yield cluster.scheduler_address

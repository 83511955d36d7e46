"""A hostile corpus, generated: broken metadata, animations of every kind, multi-frame files, damaged files.

Import from tests as ``from hostile import ...`` (pytest puts tests/ on sys.path); ``python tests/hostile.py DIR
--count N`` writes a corpus of N files (every kind, several variants each, bad files mixed among good ones) for a
manual end-to-end run. ``cases()`` returns the small corpus the tests use, each file with the outcome expected
after compress: ``coded`` or ``passthrough`` (with a reason fragment), and for animations the frame count.

Photos are crops of the sample images shipped in flows/sample_data, so nothing outside the repository is needed.
"""
from __future__ import annotations

import argparse
import io
import struct
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image, PngImagePlugin

SAMPLES = Path(__file__).resolve().parents[1] / "flows" / "sample_data"


@dataclass(frozen=True)
class Hostile:
    path: str
    data: bytes
    kind: str                      # coded | passthrough | duplicate
    reason: str | None = None      # a fragment of the passthrough reason (or of a conversion note for coded)
    frames: int = 1
    text: dict = field(default_factory=dict)  # text chunks the decoded PNG must carry
    upright_size: tuple[int, int] | None = None  # (w, h) after orientation, when it differs from the file's


def photo(seed: int, width: int = 48, height: int = 40) -> Image.Image:
    """A crop of a shipped sample photo, different per seed."""
    names = sorted(SAMPLES.glob("*.png"))
    with Image.open(names[seed % len(names)]) as image:
        image = image.convert("RGB")
        x = (seed * 37) % (image.width - width)
        y = (seed * 53) % (image.height - height)
        return image.crop((x, y, x + width, y + height))


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    sink = io.BytesIO()
    image.save(sink, fmt, **options)
    return sink.getvalue()


# ---------------------------------------------------------------- EXIF and other metadata

def tiff_block(entries: list[tuple[int, int, int, bytes]], tail: bytes = b"") -> bytes:
    """A little-endian TIFF/EXIF block with IFD0 ``entries`` (tag, type, count, value bytes), as written."""
    offset = 8 + 2 + 12 * len(entries) + 4
    ifd, extra = struct.pack("<H", len(entries)), b""
    for tag, kind, count, value in entries:
        if len(value) <= 4:
            ifd += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\0")
        else:
            ifd += struct.pack("<HHII", tag, kind, count, offset + len(extra))
            extra += value
    return b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + extra + tail


def _short(value: int) -> bytes:
    return struct.pack("<H", value)


BROKEN_EXIF = {
    # XResolution (RATIONAL) holding text: Pillow reads it, and re-serialising raises TypeError.
    "rational_as_text": tiff_block([(0x011A, 2, 4, b"abc\0"), (0x0112, 3, 1, _short(6))]),
    # Orientation stored as a RATIONAL 6/1: Pillow reads 6.0 and cannot write it back (struct.error).
    "orientation_rational": tiff_block([(0x0112, 5, 1, struct.pack("<II", 6, 1))]),
    # The Exif sub-IFD pointer points far past the end of the block.
    "ifd_offset_past_end": tiff_block([(0x0112, 3, 1, _short(1)), (0x8769, 4, 1, struct.pack("<I", 99999))]),
    # IFD0 claims 40 entries; the block holds two.
    "ifd_count_too_large": b"II*\0" + struct.pack("<IH", 8, 40) + struct.pack("<HHI", 0x0112, 3, 1) + _short(1)
                           + b"\0\0" + b"\0" * 12,
    # Orientation as text: not applied, kept.
    "orientation_text": tiff_block([(0x0112, 2, 4, b"six\0")]),
    # Not a TIFF block at all.
    "garbage": bytes(range(256)) * 4,
}


def jpeg_with_exif(seed: int, block: bytes) -> bytes:
    return _save(photo(seed), "JPEG", quality=85, exif=b"Exif\0\0" + block)


def jpeg_with_icc(seed: int, icc: bytes) -> bytes:
    return _save(photo(seed), "JPEG", quality=85, icc_profile=icc)


def png_with_text(seed: int) -> tuple[bytes, dict]:
    xmp = "<x:xmpmeta>" + "x" * 3000 + "</x:xmpmeta>"
    text = {"Title": "hostile", "Author": "Zoë Ångström", "XML:com.adobe.xmp": xmp}
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", text["Title"])
    info.add_itxt("Author", text["Author"])
    info.add_text("XML:com.adobe.xmp", text["XML:com.adobe.xmp"], zip=True)
    return _save(photo(seed), "PNG", pnginfo=info), text


def png_with_huge_icc(seed: int, size: int = 100_000) -> bytes:
    return _save(photo(seed), "PNG", icc_profile=np.random.default_rng(seed).bytes(size))


def jpeg_with_comment(seed: int) -> tuple[bytes, dict]:
    return _save(photo(seed), "JPEG", quality=85, comment=b"scanned \xff\xfe by hand"), \
        {"Comment": "scanned \xff\xfe by hand"}


# ---------------------------------------------------------------- animations and multi-frame files

def _frames(seed: int, count: int, width: int = 32, height: int = 24, alpha: bool = False) -> list[Image.Image]:
    out = []
    for n in range(count):
        frame = photo(seed + n, width, height)
        if alpha:
            frame = frame.convert("RGBA")
            mask = np.full((height, width), 255, np.uint8)
            mask[: height // 3, : width // 2] = 0  # a transparent corner, so disposal matters
            frame.putalpha(Image.fromarray(mask))
        out.append(frame)
    return out


def gif(seed: int, count: int = 5, loop: int | None = 0) -> bytes:
    """Palette frames with transparency, varying durations and every disposal method."""
    frames = [f.quantize(64) for f in _frames(seed, count)]
    options = {"duration": [40 + 30 * n for n in range(count)], "disposal": [(n % 4) for n in range(count)],
               "transparency": 0}
    if loop is not None:
        options["loop"] = loop
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], optimize=False, **options)


def apng(seed: int, count: int = 4) -> bytes:
    frames = _frames(seed, count, alpha=True)
    return _save(frames[0], "PNG", save_all=True, append_images=frames[1:], loop=2,
                 duration=[25 + 25 * n for n in range(count)], disposal=[n % 3 for n in range(count)],
                 blend=[n % 2 for n in range(count)])


def webp(seed: int, count: int = 4) -> bytes:
    frames = _frames(seed, count)
    return _save(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=[30, 60, 90, 120][:count],
                 loop=3, lossless=True)


def avif(seed: int, count: int = 3) -> bytes:
    frames = _frames(seed, count)
    return _save(frames[0], "AVIF", save_all=True, append_images=frames[1:], duration=[50, 100, 150][:count],
                 quality=90)


def tiff_pages(seed: int, sizes: list[tuple[int, int]]) -> bytes:
    pages = [photo(seed + n, w, h) for n, (w, h) in enumerate(sizes)]
    return _save(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def mpo(seed: int) -> bytes:
    left, right = photo(seed), photo(seed + 1)
    return _save(left, "MPO", save_all=True, append_images=[right])


def mpo_missing_frame(seed: int) -> bytes:
    """An MPO whose index points the second frame past the end of the file (the first frame still decodes)."""
    data = mpo(seed)
    second = data.index(b"\xff\xd8", 4)
    return data[:second]


def fli(seed: int, count: int = 6, width: int = 40, height: int = 30, repeat: int = 2) -> bytes:
    """An FLC animation (256-colour frames, raw FLI_COPY chunks); each picture is shown ``repeat`` frames in a row."""
    palette = bytes(np.repeat(np.arange(256, dtype=np.uint8), 3))  # grey ramp: frames look like the photos
    pictures = [np.asarray(photo(seed + n // repeat, width, height).convert("L")) for n in range(count)]

    def frame(chunks: list[bytes]) -> bytes:
        body = b"".join(chunks)
        return struct.pack("<IHH8x", 16 + len(body), 0xF1FA, len(chunks)) + body

    def chunk(kind: int, body: bytes) -> bytes:
        return struct.pack("<IH", 6 + len(body), kind) + body

    colour = chunk(4, struct.pack("<HBB", 1, 0, 0) + palette)  # COLOR_256: one packet of 256 entries
    frames = [frame(([colour] if n == 0 else []) + [chunk(16, pixels.tobytes())]) for n, pixels in enumerate(pictures)]
    body = b"".join(frames)
    header = struct.pack("<IHHHHHHI", 128 + len(body), 0xAF12, count, width, height, 8, 3, 70).ljust(128, b"\0")
    return header + body


# ---------------------------------------------------------------- damaged files

def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def corrupt_jpeg(seed: int) -> bytes:
    data = bytearray(_save(photo(seed), "JPEG", quality=85))
    start = data.index(b"\xff\xc4") + 4
    for i in range(start, start + 26):
        data[i] ^= 0xFF
    return bytes(data)


# ---------------------------------------------------------------- the corpus

def cases(seed: int = 0) -> list[Hostile]:
    """One file of every kind, good and bad side by side, with the outcome each must have."""
    s = seed * 100
    text_png, text_png_keys = png_with_text(s + 9)
    comment_jpeg, comment_keys = jpeg_with_comment(s + 10)
    good = _save(photo(s + 1), "PNG")
    out = [
        Hostile("good/photo.png", good, "coded"),
        Hostile("good/photo.jpg", _save(photo(s + 2), "JPEG", quality=90), "coded"),
        Hostile("good/copy.png", good, "duplicate"),
        Hostile("exif/rational_as_text.jpg", jpeg_with_exif(s + 3, BROKEN_EXIF["rational_as_text"]), "coded",
                reason="EXIF orientation 6 applied", upright_size=(40, 48)),
        Hostile("exif/orientation_rational.jpg", jpeg_with_exif(s + 4, BROKEN_EXIF["orientation_rational"]),
                "coded", reason="EXIF orientation 6 applied", upright_size=(40, 48)),
        Hostile("exif/ifd_offset_past_end.jpg", jpeg_with_exif(s + 5, BROKEN_EXIF["ifd_offset_past_end"]), "coded"),
        Hostile("exif/ifd_count_too_large.jpg", jpeg_with_exif(s + 6, BROKEN_EXIF["ifd_count_too_large"]), "coded"),
        Hostile("exif/orientation_text.jpg", jpeg_with_exif(s + 7, BROKEN_EXIF["orientation_text"]), "coded",
                reason="not applied"),
        Hostile("exif/garbage.jpg", jpeg_with_exif(s + 8, BROKEN_EXIF["garbage"]), "coded"),
        Hostile("icc/garbage.jpg", jpeg_with_icc(s + 11, b"not a profile" * 50), "coded"),
        Hostile("icc/huge.png", png_with_huge_icc(s + 12), "coded"),
        Hostile("text/chunks.png", text_png, "coded", text=text_png_keys),
        Hostile("text/comment.jpg", comment_jpeg, "coded", text=comment_keys),
        Hostile("anim/loop.gif", gif(s + 13), "coded", frames=5),
        Hostile("anim/once.gif", gif(s + 14, count=3, loop=None), "coded", frames=3),
        Hostile("anim/alpha.png", apng(s + 15), "coded", frames=4),
        Hostile("anim/anim.webp", webp(s + 16), "coded", frames=4),
        Hostile("anim/anim.avif", avif(s + 17), "coded", frames=3),
        Hostile("anim/repeats.flc", fli(s + 18), "coded", frames=6),
        Hostile("pages/same_size.tif", tiff_pages(s + 19, [(32, 24)] * 3), "coded", frames=3),
        Hostile("pages/mixed_sizes.tif", tiff_pages(s + 20, [(32, 24), (24, 32)]), "passthrough",
                reason="an animated PNG holds one frame size"),
        Hostile("stereo/pair.mpo", mpo(s + 21), "coded", frames=2),
        Hostile("stereo/missing_frame.mpo", mpo_missing_frame(s + 22), "passthrough", reason="not coded:"),
        Hostile("modes/cmyk.jpg", _save(photo(s + 26).convert("CMYK"), "JPEG", quality=90), "coded",
                reason="CMYK converted to RGB"),
        Hostile("modes/deep16.png", _save(Image.fromarray((np.asarray(photo(s + 27).convert("L"), np.uint16) * 257)),
                                          "PNG"), "coded", reason="16-bit samples reduced to 8 bits"),
        Hostile("modes/palette_alpha.png", _save(photo(s + 28).quantize(16), "PNG", transparency=0), "coded"),
        Hostile("bad/truncated.png", truncated(_save(photo(s + 23), "PNG")), "passthrough", reason="truncated"),
        Hostile("bad/corrupt.jpg", corrupt_jpeg(s + 24), "passthrough", reason="broken data stream"),
        # Frame 0 is whole, so ingest accepts it; a later frame is cut: the file is stored verbatim.
        Hostile("bad/truncated.gif", truncated(gif(s + 25)), "passthrough", reason="not coded: OSError"),
        Hostile("bad/notes.txt", b"not an image\n", "passthrough", reason="not an image"),
        Hostile("bad/empty.png", b"", "passthrough", reason="empty file"),
    ]
    return out


def write_folder(root: Path, corpus: list[Hostile]) -> Path:
    for case in corpus:
        (root / case.path).parent.mkdir(parents=True, exist_ok=True)
        (root / case.path).write_bytes(case.data)
    return root


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    """A plain tar holding ``members`` in order; the same name may appear more than once."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return path


def corpus(count: int) -> list[Hostile]:
    """At least ``count`` files: the corpus of ``cases()`` again and again with new seeds, under numbered folders,
    plus one long animation (384 frames, as real FLI files have)."""
    out: list[Hostile] = [Hostile("long/384_frames.flc", fli(7, count=384, width=64, height=40, repeat=4), "coded",
                                  frames=384)]
    seed = 0
    while len(out) < count:
        out += [Hostile(f"set{seed:03d}/{c.path}", c.data, c.kind, c.reason, c.frames, c.text, c.upright_size)
                for c in cases(seed)]
        seed += 1
    return out


# ---------------------------------------------------------------- what came back

def stored_rows(sharddir: Path) -> dict[str, dict]:
    """Catalog path -> its shard row, from the newest manifest."""
    from tasks import shards, txlog

    manifest = txlog.read_manifest(*shards.open_dir(str(sharddir)))
    found = {}
    for entry in manifest["shards"]:
        for row in pq.read_table(sharddir / entry["name"]).to_pylist():
            for path in row["paths"]:
                found[path] = row
    return found


def frames_of(data: bytes) -> tuple[list[np.ndarray], list[float], int]:
    """Every frame as Pillow composites it (RGBA), with its duration, and the loop count (1 when absent)."""
    with Image.open(io.BytesIO(data)) as image:
        pictures, durations = [], []
        for n in range(getattr(image, "n_frames", 1)):
            image.seek(n)
            image.load()
            pictures.append(np.asarray(image.convert("RGBA")))
            durations.append(float(image.info.get("duration") or 0))
        return pictures, durations, image.info.get("loop", 1)


def check_stored(path: str, row: dict, case: Hostile) -> None:
    """The shard row has the outcome ``case`` promises (AssertionError naming the file otherwise)."""
    assert row["kind"] == ("coded" if case.kind == "duplicate" else case.kind), path
    if case.kind == "passthrough":
        # Ingest says "truncated", the decoder "Truncated File Read": where the cut is decides who notices.
        assert case.reason.lower() in row["reason"].lower(), (path, row["reason"])
    elif case.kind == "coded":
        assert row["frames"] == case.frames, path
        if case.reason:
            assert any(case.reason in note for note in row["conversions"]), (path, row["conversions"])


def check_decoded(path: str, data: bytes, back: bytes, case: Hostile) -> None:
    """A coded file's PNG has every frame, duration, loop count, size, text, EXIF and ICC of the original."""
    original, durations, loop = frames_of(data)
    pictures, back_durations, back_loop = frames_of(back)
    assert len(pictures) == len(original) == case.frames, path
    with Image.open(io.BytesIO(back)) as image, Image.open(io.BytesIO(data)) as source:
        assert image.format == "PNG"
        assert image.size == (case.upright_size or source.size), path
        for key, value in case.text.items():
            assert image.text[key] == value, (path, key)
        if case.upright_size is None and source.info.get("exif"):
            assert image.info["exif"] == source.info["exif"], path
        if source.info.get("icc_profile"):
            assert image.info["icc_profile"] == source.info["icc_profile"], path
    if case.frames > 1:
        assert np.allclose(back_durations, durations) and back_loop == loop, (path, back_durations, durations)
        for a, b in zip(original, pictures):
            assert np.array_equal(a[..., 3], b[..., 3]), path


def restored_name(path: str, case: Hostile) -> str:
    """Where decompress writes the file catalogued at ``path``: verbatim files at their name, coded ones as PNG."""
    return path if case.kind == "passthrough" or path.endswith(".png") else f"{path}.png"


def main() -> None:
    parser = argparse.ArgumentParser(description="Write a hostile test corpus (every kind of awkward file).")
    parser.add_argument("out", type=Path, help="folder to write (created)")
    parser.add_argument("--count", type=int, default=300, help="at least this many files (default 300)")
    parser.add_argument("--tar", action="store_true",
                        help="write OUT.tar instead of a folder, with the first file's name twice more")
    args = parser.parse_args()
    files = corpus(args.count)
    if args.tar:
        again = [(files[1].path, _save(photo(900 + n), "PNG")) for n in range(2)]
        write_tar(args.out.with_suffix(".tar"), [(f.path, f.data) for f in files] + again)
        print(f"{len(files) + len(again)} members in {args.out.with_suffix('.tar')}")
    else:
        write_folder(args.out, files)
        print(f"{len(files)} files in {args.out}")


if __name__ == "__main__":
    main()

"""One file to one shard row, and one coded row back to PNG bytes.

A still image becomes one codec bitstream; an animated or multi-frame image (GIF, APNG, animated WebP/AVIF,
FLI, multi-page TIFF, MPO) becomes a frame container (tasks/frames.py) of full frames, each coded and decoded
again before the row is kept (verify-on-write; the row's PSNR is the worst frame's). A file that cannot be
rebuilt faithfully (frames of different sizes, durations an APNG cannot hold) raises NotFaithful, and the
caller stores it verbatim: never a silent first frame.

Metadata the codec does not carry (PNG text chunks, XMP, comments) is kept in the row's ``text`` column and
written back as PNG iTXt chunks; what was changed or dropped is listed in the row's ``conversions``.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

from tasks import defaults, frames, png

_XMP_KEY, _COMMENT_KEY = "XML:com.adobe.xmp", "Comment"


class NotFaithful(ValueError):
    """The file cannot be rebuilt as it is (the reason says why); it is stored verbatim instead."""


def encode_item(codec, data: bytes, rate: dict[str, float]) -> dict[str, Any]:
    """Code one file into a row (without ids and sizes); raises when it cannot be coded or does not decode back."""
    with Image.open(io.BytesIO(data)) as opened:
        fmt, mode = opened.format, opened.mode
        text, conversions = text_metadata(opened)
        count = int(getattr(opened, "n_frames", 1) or 1)
        if count > 1:
            row = _encode_sequence(codec, opened, count, rate, conversions)
        else:
            row = _encode_still(codec, opened, rate, conversions)
    pixels = row["width"] * row["height"] * row["frames"]
    return {"kind": "coded", "mode": mode, "format": fmt, "bpp": 8 * len(row["data"]) / pixels,
            "model_fingerprint": codec.fingerprint, "text": text or None, "conversions": conversions, **row}


def _upright(image: Image.Image, conversions: list[str]) -> Image.Image:
    """Pixels upright per EXIF orientation, with the kept EXIF attached (so the codec does not turn them again)."""
    from sae_model import metadata

    kept = metadata.upright(image)
    conversions += kept.notes
    if kept.orientation != 1:
        conversions.append(f"EXIF orientation {kept.orientation} applied to the pixels")
        kept.image.info.pop("exif", None)
        if kept.exif:
            kept.image.info["exif"] = kept.exif
    kept.image.load()
    return kept.image


def _code_frame(codec, image: Image.Image, rate: dict[str, float]) -> tuple[bytes, float, dict]:
    """Encode, decode again and compare: the stream, its PSNR and the decoder's conversion report.

    PSNR is RGB 8-bit against the pixels the codec was given, as it converts them (16-bit samples reduced to
    their top 8 bits, CMYK and palettes to RGB): Pillow's own 16-bit to RGB conversion clips instead."""
    import sae_model
    from sae_model import imageio

    stream = codec.encode(image, **rate)
    decoded = codec.decode(stream)
    if decoded.size != image.size:
        raise ValueError(f"decoded size {decoded.size} differs from {image.size}")
    original = imageio.prepare(image).pixels
    colour = np.asarray(decoded)[..., : original.shape[2]] if decoded.mode in ("RGB", "RGBA") else \
        np.asarray(decoded.convert("L"))[..., None]
    if original.shape[2] == 1:
        original, colour = np.repeat(original, 3, axis=2), np.repeat(colour, 3, axis=2)
    return stream, sae_model.psnr(original, colour), decoded.info.get("saepress", {})


def _noted(report: dict, had_icc: bool, conversions: list[str]) -> None:
    if report.get("reduced_16bit") and "16-bit samples reduced to 8 bits" not in conversions:
        conversions.append("16-bit samples reduced to 8 bits")
    if report.get("cmyk_to_rgb") and not any(c.startswith("CMYK") for c in conversions):
        conversions.append("CMYK converted to RGB" + (" (its CMYK ICC profile dropped)" if had_icc else ""))


def _encode_still(codec, opened: Image.Image, rate: dict[str, float], conversions: list[str]) -> dict:
    image = _upright(opened, conversions)
    stream, quality, report = _code_frame(codec, image, rate)
    _noted(report, bool(image.info.get("icc_profile")), conversions)
    width, height = image.size
    return {"width": width, "height": height, "frames": 1, "data": stream, "psnr": quality, "frame_psnr": None}


def _duration(image: Image.Image) -> float:
    value = image.info.get("duration") or 0
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise NotFaithful(f"frame duration {value!r} is not a number") from None
    png.delay(value)  # refuses durations an APNG cannot hold
    return value


def _encode_sequence(codec, opened: Image.Image, count: int, rate: dict[str, float],
                     conversions: list[str]) -> dict:
    """Every frame coded as a full frame (Pillow resolves disposal and blending while seeking)."""
    if getattr(opened, "default_image", False):
        raise NotFaithful("APNG whose default image is not part of the animation")
    width, height = opened.size
    limit = defaults.INGEST.max_pixels  # what decompress rebuilds, over the whole sequence
    if count * width * height > limit:
        raise NotFaithful(f"{count} frames of {width}x{height} is over {limit} pixels per item")
    loop = opened.info.get("loop", 1)
    if not isinstance(loop, int) or not 0 <= loop < 2**32:
        raise NotFaithful(f"loop count {loop!r} cannot be written back")
    stored, qualities, previous = [], [], None
    for number in range(count):
        opened.seek(number)
        frame = _upright(opened, conversions if number == 0 else [])
        if frame.size != (width, height):
            raise NotFaithful(f"frame {number} is {frame.size[0]}x{frame.size[1]}, frame 0 is {width}x{height}: "
                              "an animated PNG holds one frame size")
        duration = _duration(frame)
        pixels = np.asarray(frame)
        if previous is not None and previous[0] == frame.mode and np.array_equal(previous[1], pixels):
            # A repeated frame (static scenes in FLI and GIF) reuses the previous stream and its PSNR.
            stream, quality = stored[-1].payload, qualities[-1]
        else:
            stream, quality, report = _code_frame(codec, frame, rate)
            _noted(report, bool(frame.info.get("icc_profile")), conversions)
        previous = (frame.mode, pixels)
        stored.append(frames.Frame(duration, b"SAEP", stream))
        qualities.append(quality)
    data = frames.pack(frames.Sequence(width, height, loop, tuple(stored)))
    return {"width": width, "height": height, "frames": count, "data": data, "psnr": min(qualities),
            "frame_psnr": qualities}


def text_metadata(image: Image.Image) -> tuple[dict[str, str], list[str]]:
    """Text the codec does not carry: PNG text chunks, XMP and comments, as PNG iTXt keyword -> text."""
    found: dict[str, Any] = {}
    notes: list[str] = []
    try:
        found.update(getattr(image, "text", None) or {})
    except Exception as exc:  # a damaged text chunk must not stop coding
        notes.append(f"PNG text chunks dropped: {type(exc).__name__}: {exc}")
    if image.info.get("xmp") is not None:
        found.setdefault(_XMP_KEY, image.info["xmp"])
    if image.info.get("comment") is not None:
        found.setdefault(_COMMENT_KEY, image.info["comment"])
    text = {}
    for key, value in found.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 79 or "\0" in key or not key.isprintable() \
                or not all(ord(ch) < 256 for ch in key):
            notes.append(f"text chunk {key!r} dropped: not a valid PNG keyword")
            continue
        if isinstance(value, (bytes, bytearray)):
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                value = bytes(value).decode("latin-1")
                notes.append(f"text {key!r} is not UTF-8: kept as Latin-1 text")
        if not isinstance(value, str):
            notes.append(f"text {key!r} dropped: {type(value).__name__}, not text")
            continue
        text[key] = str(value)
    return text, notes


# ---------------------------------------------------------------- back to PNG

def decode_png(row: dict, codec_for, max_pixels: int = defaults.INGEST.max_pixels) -> bytes:
    """PNG (or APNG) bytes of a coded row; ``codec_for(fingerprint)`` gives the codec of each frame's model.
    A frame sequence whose frames together hold more than ``max_pixels`` is refused before any is decoded."""
    from sae_model import read_header

    text = dict(row.get("text") or {})

    def decode(stream: bytes) -> Image.Image:
        return codec_for(row["model_fingerprint"]).decode(stream, max_pixels=max_pixels)

    if not frames.is_container(row["data"]):
        return _still_png(decode(row["data"]), row["mode"], text)
    sequence = frames.unpack(row["data"])
    if row.get("frames") not in (None, len(sequence.frames)):
        raise ValueError(f"row says {row['frames']} frames, its container holds {len(sequence.frames)}")
    if len(sequence.frames) * sequence.width * sequence.height > max_pixels:
        raise ValueError(f"{len(sequence.frames)} frames of {sequence.width}x{sequence.height} is over the "
                         f"{max_pixels}-pixel decode limit")
    headers = [read_header(f.payload) for f in sequence.frames]
    if any((h.width, h.height) != (sequence.width, sequence.height) for h in headers):
        raise ValueError("a frame's size differs from the container's canvas")
    mode = png.common_mode(h.mode for h in headers)
    first = decode(sequence.frames[0].payload)

    def pictures():
        previous, image = sequence.frames[0].payload, first
        for frame in sequence.frames:
            if frame.payload != previous:  # repeated frames share one stream: decode it once
                previous, image = frame.payload, decode(frame.payload)
            yield image.convert(mode)

    return png.apng_bytes(pictures(), [f.duration for f in sequence.frames], sequence.loop,
                          first.info.get("exif", b""), first.info.get("icc_profile", b""), text)


def _still_png(image: Image.Image, original_mode: str | None, text: dict[str, str]) -> bytes:
    """PNG with the original mode where PNG holds it, and the EXIF, ICC and text the item kept."""
    if original_mode == "1":
        image = image.convert("1")
    elif original_mode == "P" and image.mode in ("RGB", "L"):
        image = image.convert("RGB").quantize(256)
    return png.png_bytes(image, image.info.get("exif", b""), image.info.get("icc_profile", b""), text)

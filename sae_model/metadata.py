"""Metadata kept beside the pixels: EXIF and ICC as the file's own bytes, EXIF orientation applied to the pixels.

Pillow reads EXIF that it cannot write back (a rational tag holding text, an orientation stored as a rational,
IFD offsets past the end of the block): re-serialising it raises. So the EXIF kept is the file's own block,
unchanged except for the orientation value, patched in place to 1 once the pixels are turned upright. Only when
the file has no EXIF block of its own (TIFF keeps its tags in the image's own IFD) is Pillow's serialisation
used; when that fails, or when the orientation cannot be patched, the EXIF is dropped and the loss is noted.
Nothing here raises for bad metadata: the notes say what was not kept.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from PIL import Image

ORIENTATION = 0x0112
EXIF_PREFIX = b"Exif\x00\x00"
# EXIF orientation -> the transpose that shows the pixels upright (as ImageOps.exif_transpose).
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


@dataclass(frozen=True)
class Upright:
    image: Image.Image          # the pixels as a viewer shows them
    exif: bytes                 # EXIF to keep ("Exif\0\0" + TIFF block, orientation 1), b"" when none or dropped
    icc: bytes                  # the ICC profile as found, b"" when none
    orientation: int            # the orientation applied (1: none)
    notes: tuple[str, ...]      # what was dropped or not applied, one line each


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


def upright(image: Image.Image) -> Upright:
    """The image turned upright per its EXIF orientation, with the EXIF and ICC bytes to keep; never raises."""
    notes: list[str] = []
    raw = image.info.get("exif")
    raw = bytes(raw) if isinstance(raw, (bytes, bytearray)) and raw else b""
    try:
        exif = image.getexif()
        value = exif.get(ORIENTATION, 1)
    except Exception as exc:  # Pillow cannot parse it: keep the bytes, the orientation is unknown
        exif, value = None, 1
        notes.append(f"EXIF unreadable ({_one_line(exc)}): kept as found, orientation not applied")
    orientation = _orientation_value(value)
    if orientation is None:
        notes.append(f"EXIF orientation {value!r} is not 1-8: not applied")
        orientation = 1
    kept = raw
    if orientation != 1:
        image = image.transpose(_UPRIGHT[orientation])
        kept = _patched_orientation(raw) if raw else _serialised(exif, notes, upright=True)
        if raw and kept is None:
            notes.append("EXIF dropped: its orientation entry could not be reset after turning the pixels upright")
        kept = kept or b""
    elif not raw and exif:
        kept = _serialised(exif, notes, upright=False)
    icc = image.info.get("icc_profile")
    if icc is not None and not isinstance(icc, (bytes, bytearray)):
        notes.append(f"ICC profile dropped: {type(icc).__name__}, not bytes")
        icc = None
    return Upright(image, kept, bytes(icc or b""), orientation, tuple(notes))


def _orientation_value(value) -> int | None:
    """A number 1-8, also when stored with the wrong numeric type (6/1 as a rational); text is not applied."""
    if isinstance(value, (bytes, str)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return int(number) if number.is_integer() and 1 <= number <= 8 else None


def _serialised(exif: Image.Exif, notes: list[str], upright: bool) -> bytes:
    """Pillow's serialisation of EXIF the file did not hold as a block of its own; b"" (noted) when it fails."""
    try:
        if upright:
            exif[ORIENTATION] = 1
        return exif.tobytes()
    except Exception as exc:
        notes.append(f"EXIF dropped: it cannot be written back ({_one_line(exc)})")
        return b""


def _patched_orientation(raw: bytes) -> bytes | None:
    """``raw`` with its IFD0 orientation entry set to 1 in place; None when the entry cannot be found safely."""
    start = len(EXIF_PREFIX) if raw.startswith(EXIF_PREFIX) else 0
    endian = {b"II": "<", b"MM": ">"}.get(raw[start:start + 2])
    if endian is None or len(raw) < start + 8:
        return None
    (ifd,) = struct.unpack_from(endian + "I", raw, start + 4)
    at = start + ifd
    if at + 2 > len(raw):
        return None
    (count,) = struct.unpack_from(endian + "H", raw, at)
    for entry in range(at + 2, min(at + 2 + 12 * count, len(raw) - 11), 12):
        tag, kind, n = struct.unpack_from(endian + "HHI", raw, entry)
        if tag != ORIENTATION:
            continue
        out = bytearray(raw)
        if kind == 3 and n == 1:  # SHORT, held in the entry itself
            struct.pack_into(endian + "HH", out, entry + 8, 1, 0)
            return bytes(out)
        if kind == 4 and n == 1:  # LONG
            struct.pack_into(endian + "I", out, entry + 8, 1)
            return bytes(out)
        if kind == 5 and n == 1:  # RATIONAL (a wrong type some writers use): numerator and denominator elsewhere
            (offset,) = struct.unpack_from(endian + "I", raw, entry + 8)
            if start + offset + 8 <= len(raw):
                struct.pack_into(endian + "II", out, start + offset, 1, 1)
                return bytes(out)
        return None
    return None

"""The frame container: how a shard row holds an animated image (``frames`` > 1), engine by engine.

A coded row's ``data`` is one codec bitstream (magic ``SAEP``, sae_model/bitstream.py) for a still image, and
this container (magic ``SAEF``) for a frame sequence. Frames are stored as full frames: the source's disposal
and blending are resolved by Pillow when it reads the file, so every frame decodes alone. Each frame names the
engine that coded it, so other per-frame engines plug in beside the codec: give the engine a four-byte tag in
``ENGINES`` and a decoder in tasks/items.py.

Container format version 1, all integers little-endian::

    offset size  field
    0      4     magic b"SAEF"
    4      1     container version (1)
    5      4     frame count N (u32, 2..MAX_FRAMES)
    9      4     canvas width (u32), every frame has this size
    13     4     canvas height (u32)
    17     4     loop: number of plays, 0 = forever (as Pillow reports ``loop``; a file without a loop
                 field plays once, 1)
    21     16*N  per frame: duration in ms (f64; Pillow's ``duration``, 0 when the source has none),
                 engine tag (4 bytes, see ENGINES), payload length (u32)
    ...          the N payloads, in frame order
    end-4  4     CRC32 of every byte before it

Lengths are checked against the container's real length before any payload is sliced, so a truncated or
padded container is refused, never decoded into fewer frames.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

MAGIC = b"SAEF"
VERSION = 1
MAX_FRAMES = 1 << 16
# Four-byte engine tags -> what the payload is.
ENGINES = {b"SAEP": "saepress codec bitstream (sae_model)"}
_HEAD = struct.Struct("<4sBIIII")
_FRAME = struct.Struct("<d4sI")


class ContainerError(ValueError):
    """The bytes are not a well-formed frame container; the message says what is wrong."""


@dataclass(frozen=True)
class Frame:
    duration: float  # ms
    engine: bytes    # a key of ENGINES
    payload: bytes


@dataclass(frozen=True)
class Sequence:
    width: int
    height: int
    loop: int
    frames: tuple[Frame, ...]


def is_container(data: bytes) -> bool:
    return data[:4] == MAGIC


def pack(sequence: Sequence) -> bytes:
    if not 2 <= len(sequence.frames) <= MAX_FRAMES:
        raise ContainerError(f"a container holds 2..{MAX_FRAMES} frames, not {len(sequence.frames)}")
    head = _HEAD.pack(MAGIC, VERSION, len(sequence.frames), sequence.width, sequence.height, sequence.loop)
    table = b"".join(_FRAME.pack(f.duration, f.engine, len(f.payload)) for f in sequence.frames)
    body = b"".join([head, table, *(f.payload for f in sequence.frames)])
    return body + struct.pack("<I", zlib.crc32(body))


def unpack(data: bytes) -> Sequence:
    """Parse and check a container (magic, version, lengths, CRC, engine tags)."""
    if len(data) < _HEAD.size + 4 or data[:4] != MAGIC:
        raise ContainerError("not a frame container (bad magic or too short)")
    _, version, count, width, height, loop = _HEAD.unpack_from(data)
    if version != VERSION:
        raise ContainerError(f"frame container version {version}; this saepress reads version {VERSION}: upgrade")
    if not 2 <= count <= MAX_FRAMES or width < 1 or height < 1:
        raise ContainerError(f"bad container header ({count} frames of {width}x{height})")
    table_end = _HEAD.size + _FRAME.size * count
    if table_end + 4 > len(data):
        raise ContainerError("frame container truncated (frame table)")
    (crc,) = struct.unpack_from("<I", data, len(data) - 4)
    if zlib.crc32(memoryview(data)[:-4]) != crc:
        raise ContainerError("frame container CRC mismatch")
    entries = [_FRAME.unpack_from(data, _HEAD.size + _FRAME.size * n) for n in range(count)]
    if table_end + sum(length for _, _, length in entries) + 4 != len(data):
        raise ContainerError("frame container length does not match its frame table (truncated or padded)")
    frames, offset = [], table_end
    for duration, engine, length in entries:
        if engine not in ENGINES:
            raise ContainerError(f"unknown frame engine {engine!r}; this saepress knows {sorted(ENGINES)}")
        if not duration >= 0:  # also refuses NaN
            raise ContainerError(f"bad frame duration {duration}")
        frames.append(Frame(duration, engine, bytes(data[offset:offset + length])))
        offset += length
    return Sequence(width, height, loop, tuple(frames))

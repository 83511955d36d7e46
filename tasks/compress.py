"""Units of work for compress and decompress: one shard per call, run on Dask workers, safe to retry.

Workers load the model from ``SHARDDIR/models/<fingerprint>/`` (never from the registry), once per process.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import posixpath
import tempfile
import uuid
import zlib
from typing import Any

from tasks import defaults, exact, frames, shards, warned
from tasks.items import decode_png, encode_item

# One codec per model folder per worker process: loading weights for every batch would dominate small shards.
_CODECS: dict[str, Any] = {}


class ItemError(Exception):
    """One stored item cannot be restored (corrupt row, wrong or missing model); the message says which."""


def model_dir(sharddir: str, fingerprint: str) -> str:
    return f"{sharddir.rstrip('/')}/models/{fingerprint}"


def load_codec(sharddir: str, fingerprint: str):
    """The codec stored in SHARDDIR for ``fingerprint``, checked against it (cached per process).

    The files are checked before anything is unpickled: weights that do not hash to the fingerprint are never
    loaded, so a replaced model folder can neither decode garbage nor hand torch a hostile payload.
    """
    from sae_model import Codec, CodecError

    url = model_dir(sharddir, fingerprint)
    if url not in _CODECS:
        fs, path = shards.open_dir(url)
        try:
            with contextlib.ExitStack() as stack:
                if not shards.is_local(fs):
                    tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="saepress-model-"))
                    if fs.isdir(path):
                        fs.get(f"{path}/", f"{tmp}/", recursive=True)
                    fs, path = shards.open_dir(tmp)
                if problems := model_problems(fs, path, fingerprint):
                    raise ItemError(f"model {fingerprint[:12]} at {url}: {'; '.join(problems)}; "
                                    "this shard set cannot be decoded with it")
                codec = Codec.load(path)
        except (CodecError, OSError, ValueError) as exc:
            raise ItemError(f"model at {url} cannot be loaded ({exc})") from None
        _CODECS[url] = codec
    return _CODECS[url]


def model_problems(fs, path: str, fingerprint: str) -> list[str]:
    """What is wrong with a stored model folder, found without unpickling anything: both files present,
    ``config.json`` a JSON object, ``weights.pt`` hashing to ``fingerprint`` (the fingerprint is that hash)."""
    from sae_model.codec import CONFIG, WEIGHTS

    problems = []
    try:
        config = json.loads(fs.cat_file(f"{path}/{CONFIG}"))
        if not isinstance(config, dict):
            problems.append(f"{CONFIG} is not a JSON object")
    except FileNotFoundError:
        problems.append(f"{CONFIG} is missing")
    except ValueError:
        problems.append(f"{CONFIG} is not valid JSON")
    try:
        weights = fs.cat_file(f"{path}/{WEIGHTS}")
        if hashlib.sha256(weights).hexdigest() != fingerprint:
            problems.append(f"{WEIGHTS} does not hash to the fingerprint (replaced, truncated or altered)")
    except FileNotFoundError:
        problems.append(f"{WEIGHTS} is missing")
    return problems


# ---------------------------------------------------------------- compress

def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def _passthrough(data: bytes, fmt: str | None, reason: str) -> dict[str, Any]:
    return {"kind": "passthrough", "data": data, "format": fmt, "reason": reason, "conversions": []}


def store_item(codec, item: dict, data: bytes, rate: dict[str, float], fidelity: str) -> dict[str, Any]:
    """The shard row of one file: coded, stored exactly, or its verbatim bytes with the reason; never raises for
    the file's sake.

    ``fidelity`` (tasks/exact.py) sends JPEGs (jpeg-exact) or every image (lossless) to the exact engines instead
    of the codec; what they cannot hold exactly they return verbatim, never coded lossily. Any failure of this one
    item (Pillow reading or seeking frames, an encoder, the decode-after-encode check, a row that would not
    serialise) makes it passthrough with the error's class and message as its reason. Warnings raised meanwhile
    (Pillow's) are not printed: they end the row's ``conversions`` (tasks.warned).
    """
    if item["status"] == "rejected":
        row = _passthrough(data, item.get("format"), item.get("reason") or "rejected by ingest")
    else:
        with warned.collected() as notes:
            try:
                if exact.wants_exact(fidelity, item.get("format")):
                    row = exact.encode_exact(data, item.get("format"), fidelity)
                else:
                    row = encode_item(codec, data, rate)
            except Exception as exc:  # per item, whatever the cause: the batch goes on
                row = _passthrough(data, item.get("format"), f"not coded: {_one_line(exc)}")
        row = {**row, "conversions": row["conversions"] + notes}
    row = _identified(row, item, data)
    if row["kind"] != "passthrough":
        try:
            shards.check_serialisable(row)
        except Exception as exc:
            fallback = _passthrough(data, item.get("format"), f"not stored coded: {_one_line(exc)}")
            row = _identified({**fallback, "conversions": warned.of(row["conversions"])}, item, data)
    return row


def _identified(row: dict, item: dict, data: bytes) -> dict:
    return {**row, "id": item["id"], "paths": item["paths"], "original_bytes": len(data),
            "compressed_bytes": len(row["data"]), "crc32": zlib.crc32(row["data"])}


def compress_batch(source_url: str, sharddir: str, job: str, batch: int, items: list[dict], fingerprint: str,
                   model_uri: str, rate: dict[str, float], fidelity: str) -> dict:
    """Store ``items`` (dicts: id, paths, status, format, reason, size) as one new shard; return its entry and rows.

    Every item read is stored: coded, or verbatim (passthrough) with its reason (store_item). An item that cannot
    be read any more, or whose bytes no longer match its id, comes back in ``skipped`` (with its reason, so the job's
    accounting holds) and in ``problems``; the next job tries it again. Only batch-level causes raise (the
    source, the model or the shard set unreachable), and the caller retries the batch. The shard gets a fresh
    name per attempt, so a retried or duplicated attempt never overwrites a file another attempt reported.
    """
    from tasks.sources import open_source

    codec = load_codec(sharddir, fingerprint)
    by_path = {item["paths"][0]: item for item in items}
    rows, problems, skipped = [], [], []

    def skip(item: dict, reason: str) -> None:
        problems.append(f"{item['paths'][0]}: {reason}")
        skipped.extend({"path": path, "id": item["id"], "reason": reason} for path in item["paths"])

    for path, data in open_source(source_url).read_many(list(by_path), errors="return"):
        item = by_path.pop(path)
        if isinstance(data, Exception):
            skip(item, f"cannot be read from the source ({data}); not stored, the next compress tries again")
        elif hashlib.sha256(data).hexdigest() != item["id"]:
            skip(item, "content changed since it was catalogued; run ingest again")
        else:
            rows.append(store_item(codec, item, data, rate, fidelity))
    for item in by_path.values():
        skip(item, "not found in the source; not stored, the next compress tries again")
    name = f"shards/{job}-{batch:05d}-{uuid.uuid4().hex[:8]}.parquet"
    entry = {"name": name, "rows": len(rows), "model_fingerprint": fingerprint, "job": job}
    if rows:
        from sae_model import read_header

        coded = [row for row in rows if row["kind"] == "coded" and not frames.is_container(row["data"])]
        version = str(read_header(coded[0]["data"]).format_version) if coded else ""
        data = shards.shard_bytes(rows, {"saepress.bitstream_format_version": version,
                                         "saepress.model_fingerprint": fingerprint, "saepress.model_uri": model_uri,
                                         "saepress.created": shards.now(), "saepress.job": job})
        fs, root = shards.open_dir(sharddir)
        shards.put_atomic(fs, f"{root}/{name}", data)
        entry.update(bytes=len(data), sha256=shards.sha256_hex(data))
    summary = [{k: row.get(k) for k in ("id", "paths", "kind", "original_bytes", "compressed_bytes", "width", "height",
                                        "frames", "bpp", "psnr")} | {"warnings": warned.of(row["conversions"])}
               for row in rows]
    return {"shard": entry if rows else None, "items": summary, "problems": problems, "skipped": skipped}


# ---------------------------------------------------------------- decompress

def check_row(row: dict) -> None:
    """Raise ItemError when a row's payload is not what was written: CRC, the content hash of passthrough bytes,
    for coded rows every bitstream header (one per frame) parsing and naming the row's model, for lossless rows
    the item header parsing and holding the row's ``exact_sha256``. No decoding (exact rows are checked against
    ``exact_sha256`` when rebuilt)."""
    from sae_model import CodecError, read_header

    if zlib.crc32(row["data"]) != row["crc32"]:
        raise ItemError(f"item {row['id'][:12]} is corrupt (CRC mismatch)")
    if row["kind"] == "passthrough":
        if hashlib.sha256(row["data"]).hexdigest() != row["id"]:
            raise ItemError(f"item {row['id'][:12]} is corrupt (content hash mismatch)")
        return
    if row["kind"] in exact.EXACT_KINDS:
        if row["kind"] == "lossless":
            from sae_model import lossless

            try:
                if lossless.stored_sha256(row["data"]) != row["exact_sha256"]:
                    raise ItemError(f"item {row['id'][:12]}: lossless header's sha256 differs from the row's")
            except CodecError as exc:
                raise ItemError(f"item {row['id'][:12]}: bad lossless item header ({exc})") from None
        return
    try:
        streams = ([f.payload for f in frames.unpack(row["data"]).frames] if frames.is_container(row["data"])
                   else [row["data"]])
        for stream in streams:
            header = read_header(stream)
            if header.fingerprint != row["model_fingerprint"]:
                raise ItemError(f"item {row['id'][:12]}: bitstream names model {header.fingerprint[:12]}, "
                                f"row says {row['model_fingerprint'][:12]}")
    except (CodecError, frames.ContainerError) as exc:
        raise ItemError(f"item {row['id'][:12]}: bad bitstream header ({exc})") from None


def restore(sharddir: str, row: dict, max_pixels: int = defaults.INGEST.max_pixels) -> bytes:
    """The bytes to write for one stored row: the verbatim file, or a PNG (APNG for frames) of the decoded image
    (refused when a frame's header, or the frames together, declare more than ``max_pixels``).

    Any failure to rebuild the row raises ItemError naming the item and the cause."""
    from sae_model import CodecError

    check_row(row)
    if row["kind"] == "passthrough":
        return row["data"]
    try:
        if row["kind"] in exact.EXACT_KINDS:
            return exact.rebuild(row, max_pixels)
        return decode_png(row, lambda fingerprint: load_codec(sharddir, fingerprint), max_pixels)
    except ItemError:
        raise
    except CodecError as exc:
        how = "does not rebuild exactly" if row["kind"] in exact.EXACT_KINDS else "cannot be decoded"
        raise ItemError(f"item {row['id'][:12]} {how} ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # whatever breaks one item's rebuild, the others are still restored
        raise ItemError(f"item {row['id'][:12]} cannot be rebuilt ({_one_line(exc)})") from None


def output_name(path: str, kind: str) -> str:
    """Where a stored item goes under the output folder: coded and lossless images (PNGs) get ``.png`` appended
    unless they end in it; passthrough and jpeg-exact items are the original files, at their own path.

    ``photo.jpg`` -> ``photo.jpg.png`` (no clash with a ``photo.png`` beside it), ``scan.png`` -> ``scan.png``.
    """
    if kind in ("coded", "lossless") and not path.lower().endswith(".png"):
        return f"{path}.png"
    return path


def safe_relative(path: str) -> str:
    """``path`` as a clean relative POSIX path, or ItemError when it would land outside the output folder."""
    clean = posixpath.normpath(path.replace("\\", "/"))
    if clean.startswith("/") or clean == ".." or clean.startswith("../") or clean in ("", ".") or ":" in clean.split("/")[0]:
        raise ItemError(f"{path!r} would be written outside the output folder; left out")
    return clean


def decompress_shard(sharddir: str, shard: str, targets: dict[str, list[str]], out: str,
                     entry: dict | None, max_pixels: int = defaults.INGEST.max_pixels) -> dict:
    """Write every item of ``shard`` listed in ``targets`` (id -> original paths) under ``out``.

    ``entry``: the shard's manifest entry. A shard whose bytes differ from it is reported as damaged
    (a flipped byte outside every item's CRC would otherwise pass unseen); its items are still
    restored where their own checks hold. Each output path is written on its own: one that cannot be written
    is reported and the others still are; a name too long for the output filesystem is shortened
    (``renamed``: original path -> the name written). A full disk stops the shard, reported once."""
    fs, root = shards.open_dir(sharddir)
    out_fs, out_root = shards.open_dir(out)
    written, size, problems, renamed = 0, 0, [], {}
    try:
        data = fs.cat_file(f"{root}/{shard}")
        if entry is not None and not shards.matches_entry(data, entry):
            problems.append(f"{shard}: damaged (does not match its sha256 in the manifest); "
                            "items restored only where their own CRC holds")
        table = shards.read_shard_bytes(data, ids=list(targets))
    except (OSError, ValueError) as exc:
        return {"written": 0, "bytes": 0, "renamed": {},
                "problems": [f"{shard}: unreadable ({exc}); {len(targets)} item(s) lost"]}
    found = set()
    for row in table.to_pylist():
        found.add(row["id"])
        try:
            data = restore(sharddir, row, max_pixels)
        except ItemError as exc:
            problems.append(f"{shard}: {exc}; paths {targets[row['id']]}")
            continue
        for path in targets[row["id"]]:
            try:
                name = write_output(out_fs, out_root, safe_relative(output_name(path, row["kind"])), data)
            except ItemError as exc:
                problems.append(str(exc))
                continue
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    problems.append(f"disk full at {out_root}/{path}: free space and run decompress again; "
                                    f"the rest of {shard} was not written")
                    return {"written": written, "bytes": size, "renamed": renamed, "problems": problems}
                problems.append(f"{path}: cannot be written under {out} ({exc.strerror or exc}); left out")
                continue
            if name != output_name(path, row["kind"]):
                renamed[path] = name
            written += 1
            size += len(data)
    problems += [f"{shard}: item {item[:12]} missing; paths {targets[item]}" for item in set(targets) - found]
    return {"written": written, "bytes": size, "renamed": renamed, "problems": problems}


# Name lengths tried when a name is too long for the output filesystem: ext4/xfs/btrfs allow 255 bytes, some
# encrypted or network filesystems less.
NAME_BYTES = (255, 143)


def write_output(fs, root: str, name: str, data: bytes) -> str:
    """Write ``data`` at ``root/name``, shortening the file and folder names that are too long; the name used.

    A shortened component keeps its start and its extension and gains ``~`` and 8 hex digits of the hash of
    the whole original name, so two long names never end up as one file.
    """
    candidates = [name] + [shortened(name, limit) for limit in NAME_BYTES]
    for candidate in dict.fromkeys(candidates):
        try:
            shards.put_atomic(fs, f"{root}/{candidate}", data)
            return candidate
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise
            last = exc
    raise last


def shortened(name: str, limit: int) -> str:
    """``name`` with every path component cut to at most ``limit`` UTF-8 bytes (see write_output)."""
    tag = "~" + hashlib.sha256(name.encode()).hexdigest()[:8]
    parts = []
    for part in name.split("/"):
        if len(part.encode()) <= limit:
            parts.append(part)
            continue
        stem, dot, ext = part.rpartition(".")
        stem, ext = (stem, dot + ext) if dot and len(ext) <= 16 and stem else (part, "")
        room = limit - len(tag.encode()) - len(ext.encode())
        parts.append(stem.encode()[:room].decode(errors="ignore") + tag + ext)
    return "/".join(parts)

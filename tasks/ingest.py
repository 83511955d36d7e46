"""Ingest: list a source, probe its files in batches on Dask, and keep one catalog row per file.

The catalog (``WORKDIR/catalog.parquet``) is the single record of what the archive holds; later stages read
only its ``ok`` rows. Every listed file gets exactly one row, so ``ok + duplicate + rejected == seen``.
"""
from __future__ import annotations

import hashlib
import io
from collections import Counter

import pyarrow as pa
from PIL import Image, UnidentifiedImageError
from prefect import task

from tasks import store, warned
from tasks.fanout import submit_and_collect
from tasks.sources import DamagedArchive, Member, SourceError, open_source

CATALOG_VERSION = "1"
CATALOG_NAME = "catalog.parquet"
# A probe task should run for a good fraction of a second: many small files, or a few large ones. Each batch
# of a compressed tar costs a partial decompression pass, another reason not to make batches small.
BATCH_FILES = 128
BATCH_BYTES = 64 * 2**20

CATALOG_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("path", pa.string()),
    ("size", pa.int64()),
    ("modified", pa.string()),  # the source's version stamp when the file was read (sources.Member.modified)
    ("status", pa.string()),
    ("duplicate_of", pa.string()),
    ("format", pa.string()),
    ("mode", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("frames", pa.int32()),
    ("animated", pa.bool_()),
    ("orientation", pa.int8()),
    ("error", pa.string()),
    ("reason", pa.string()),
    ("warnings", pa.list_(pa.string())),  # raised while probing (tasks.warned); null when none, or catalogued before
])

# Signatures of formats Pillow reads: a file that starts like one but will not open is damaged, not "not an image".
_READABLE_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF87a": "GIF", b"GIF89a": "GIF",
    b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"BM": "BMP",
}
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1")


def _row(path: str, size: int, **values) -> dict:
    row = dict.fromkeys(CATALOG_SCHEMA.names)
    row.update(path=path, size=size, animated=False, **values)
    return row


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _unidentified(data: bytes) -> tuple[str, str]:
    """Error class and reason for bytes Pillow does not recognise."""
    head = data[:1024].lstrip()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "unsupported", "SVG vector image: only raster images are supported"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "unsupported", "HEIF/HEIC image: this Pillow build cannot decode it"
    if data.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL ")):
        return "unsupported", "JPEG XL image: this Pillow build cannot decode it"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "corrupt", "starts like a WEBP file but its header cannot be read"
    for magic, name in _READABLE_MAGIC.items():
        if data.startswith(magic):
            return "corrupt", f"starts like a {name} file but its header cannot be read"
    return "not_image", "not an image format Pillow recognises"


def probe_file(path: str, data: bytes, max_pixels: int) -> dict:
    """Catalog row (status ``ok`` or ``rejected``) for one file's bytes; never raises for bad content.
    The warnings Pillow raises meanwhile go in the row, not on the console."""
    with warned.collected() as notes:
        row = _probed(path, data, max_pixels)
    return {**row, "warnings": notes or None}


def _probed(path: str, data: bytes, max_pixels: int) -> dict:
    row = _row(path, len(data), id=hashlib.sha256(data).hexdigest())
    if not data:
        return {**row, "status": "rejected", "error": "not_image", "reason": "empty file"}
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        return {**row, "status": "rejected", "error": "too_large",
                "reason": f"image header declares far more than {max_pixels} pixels (--max-pixels)"}
    except UnidentifiedImageError:
        error, reason = _unidentified(data)
        return {**row, "status": "rejected", "error": error, "reason": reason}
    except Exception as exc:  # Pillow plugins raise many types on garbage headers
        return {**row, "status": "rejected", "error": "corrupt", "reason": _one_line(exc)}
    with image:
        row.update(format=image.format, mode=image.mode, width=image.width, height=image.height)
        # Checked on the header, before any pixel is decoded.
        if image.width * image.height > max_pixels:
            return {**row, "status": "rejected", "error": "too_large",
                    "reason": f"{image.width}x{image.height} = {image.width * image.height} pixels is over "
                              f"the limit of {max_pixels} (--max-pixels)"}
        try:
            frames = int(getattr(image, "n_frames", 1))
            image.seek(0)
            image.load()
        except Image.DecompressionBombError as exc:
            return {**row, "status": "rejected", "error": "too_large", "reason": _one_line(exc)}
        except Exception as exc:
            truncated = isinstance(exc, EOFError) or "truncated" in str(exc)
            return {**row, "status": "rejected", "error": "truncated" if truncated else "corrupt",
                    "reason": _one_line(exc)}
        try:
            # The codec converts to RGB; a mode Pillow cannot convert is unusable downstream.
            image.crop((0, 0, 1, 1)).convert("RGB")
        except Exception as exc:
            return {**row, "status": "rejected", "error": "unsupported", "reason": _one_line(exc)}
        row.update(frames=frames, animated=frames > 1, orientation=_orientation(image))
    return {**row, "status": "ok"}


def _orientation(image: Image.Image) -> int:
    try:
        value = int(image.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block is not a reason to reject the pixels
        return 1
    return value if 1 <= value <= 8 else 1


def probe_batch(url: str, members: list[tuple[str, int]], max_pixels: int, max_bytes: int) -> list[dict]:
    """Rows for a batch of members, read in one pass over the source. Runs on a Dask worker."""
    # Pillow's own bomb guard reads this process-wide value (it fires at twice the value); align it with
    # the run's limit so that a limit above Pillow's default works. Every probe in a run uses the same value.
    Image.MAX_IMAGE_PIXELS = max_pixels
    sizes = dict(members)
    rows = {}
    for path, data in open_source(url).read_many(sizes, max_bytes=max_bytes, errors="return"):
        if isinstance(data, SourceError):
            rows[path] = _row(path, sizes[path], status="rejected", error=data.kind, reason=str(data))
        else:
            rows[path] = probe_file(path, data, max_pixels)
    return [rows[path] for path, _ in members]


def list_members(url: str) -> dict:
    """``{"members": [Member] in source order, "damage": str | None, "missing": str | None}``.

    ``damage`` says an archive broke part way (the members before it are kept); ``missing`` that the source
    does not exist or is a plain file (a user error: returned, not raised, so that it is not retried).
    """
    members: list[tuple[str, int]] = []
    try:
        for member in open_source(url).iter_members():
            members.append(member)
    except (FileNotFoundError, NotADirectoryError) as exc:
        return {"members": [], "damage": None, "missing": str(exc)}
    except DamagedArchive as exc:
        damage = f"{exc}; the {len(members)} members before the damage are catalogued"
        return {"members": members, "damage": damage, "missing": None}
    return {"members": members, "damage": None, "missing": None}


def plan_probe(previous: dict[str, dict], members: list[Member]) -> tuple[dict[str, dict], list[tuple[str, int]]]:
    """The earlier rows still true of the source, and the ``(path, size)`` of every file to read: new files and
    files whose size or version stamp changed (or is unknown, as in catalogs written before stamps existed)."""
    kept = {}
    for path, size, modified in members:
        row = previous.get(path)
        if row is not None and modified and (row["size"], row.get("modified")) == (size, modified):
            kept[path] = row
    return kept, [(path, size) for path, size, _ in members if path not in kept]


def merge_rows(previous: dict[str, dict], kept: dict[str, dict], probed: list[dict],
               members: list[Member]) -> tuple[list[dict], dict[str, int]]:
    """Catalog rows in order (before duplicates are resolved), and how many files are new, changed or the same.

    A re-read file whose content is the same (its id did not change) keeps its place and so its ok/duplicate
    role; changed and new files follow in source order, like a grown source's additions.
    """
    stamps = {path: modified for path, _, modified in members}
    fresh = {row["path"]: {**row, "modified": stamps[row["path"]]} for row in probed}
    same = {path for path, row in fresh.items() if path in previous and previous[path]["id"] == row["id"]}
    rows = [fresh[path] if path in same else row for path, row in previous.items() if path in kept or path in same]
    rows += [row for path, row in fresh.items() if path not in same]
    new = sum(1 for path in fresh if path not in previous)
    return rows, {"new": new, "changed": len(fresh) - new - len(same), "same": len(kept) + len(same)}


def make_batches(members: list[tuple[str, int]]) -> list[list[tuple[str, int]]]:
    """Consecutive runs of members (archive order keeps each batch to one partial pass over a tar)."""
    batches, current, current_bytes = [], [], 0
    for path, size in members:
        if current and (len(current) >= BATCH_FILES or current_bytes + size > BATCH_BYTES):
            batches.append(current)
            current, current_bytes = [], 0
        current.append((path, size))
        current_bytes += size
    if current:
        batches.append(current)
    return batches


def resolve_duplicates(rows: list[dict]) -> list[dict]:
    """Mark ``ok`` rows whose content equals an earlier ``ok`` row as ``duplicate`` of that row's path.

    Rows keep their order: earlier runs first, then new files in source order, so a grown source never
    turns an existing ``ok`` row into a duplicate. Rejected rows stay rejected (their reason matters more).
    """
    first: dict[str, str] = {}
    out = []
    for row in rows:
        if row["status"] in ("ok", "duplicate"):
            original = first.setdefault(row["id"], row["path"])
            if original != row["path"]:
                row = {**row, "status": "duplicate", "duplicate_of": original}
            else:
                row = {**row, "status": "ok", "duplicate_of": None}
        out.append(row)
    return out


def catalog_url(workdir: str) -> str:
    """Where the catalog of ``workdir`` (a location from tasks.workdir) is."""
    return store.join(workdir, CATALOG_NAME)


def read_catalog(workdir: str) -> tuple[list[dict], dict[str, str]] | None:
    """Rows and ``saepress.*`` metadata of an existing catalog, or None when there is none."""
    url = catalog_url(workdir)
    if not store.exists(url):
        return None
    table = store.read_table(url)
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items() if k.startswith(b"saepress.")}
    return table.to_pylist(), meta


def write_catalog(workdir: str, rows: list[dict], source: str, max_pixels: int) -> str:
    """Write the catalog atomically (a reader sees the old file or the new one, never half of one); its URL."""
    metadata = {"saepress.catalog_version": CATALOG_VERSION, "saepress.source": source,
                "saepress.max_pixels": str(max_pixels)}
    table = pa.Table.from_pylist(rows, schema=CATALOG_SCHEMA.with_metadata(metadata))
    url = catalog_url(workdir)
    store.write_table(url, table)
    return url


def summarise(rows: list[dict]) -> dict:
    status = Counter(row["status"] for row in rows)
    return {
        "seen": len(rows), "ok": status["ok"], "duplicate": status["duplicate"], "rejected": status["rejected"],
        "errors": dict(sorted(Counter(r["error"] for r in rows if r["status"] == "rejected").items())),
        "animated": sum(1 for r in rows if r["status"] == "ok" and r["animated"]),
    }


# Prefect tasks: the coarse steps of the ingest flow. Dask does the per-file work inside them.

@task(name="list-source", retries=2, retry_delay_seconds=5)
def list_source(url: str) -> dict:
    import distributed

    # On a worker: a remote cluster reads the source; the flow's machine may not see it.
    return distributed.get_client().submit(list_members, url, pure=False).result()


@task(name="probe-files", retries=1, retry_delay_seconds=5)
def probe_files(url: str, members: list[tuple[str, int]], max_pixels: int, max_bytes: int) -> list[dict]:
    rows: dict[str, dict] = {}
    batches = make_batches(members)
    calls = [(url, batch, max_pixels, max_bytes) for batch in batches]
    sizes = [(len(batch), sum(size for _, size in batch)) for batch in batches]
    for _, batch_rows in submit_and_collect(probe_batch, calls, "ingest", sizes, unit="files"):
        for row in batch_rows:
            rows[row["path"]] = row
    return [rows[path] for path, _ in members]

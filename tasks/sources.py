"""Where images come from: a folder, a glob, a tar/zip archive, on local disk or behind any fsspec URL.

``open_source(url)`` picks the reader from the URL. Every reader lists members as ``Member(path, size,
modified)`` and reads them back by ``path``. Safety rules live in the read methods, so every caller gets them (the catalog, the
compressor reading files back, a catalog someone edited by hand):

- names with ``..`` or an absolute path are refused (nothing is ever written from a member name here, and
  nothing downstream should get such a name as ``ok``);
- symlinks are never followed out of a local folder; links, devices and fifos inside archives or folders are
  refused without being opened;
- a member larger than ``max_bytes`` is refused before it is read, and reads never return more than
  ``max_bytes`` even if a header lies about the size.

A ``Source`` is cheap to build and holds no open handles between calls, so Dask tasks rebuild it from the URL.
Remote storage options come from the environment (for S3: ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...,
or fsspec's ``FSSPEC_S3_<OPTION>`` variables), so a URL alone is enough on every worker.
"""
from __future__ import annotations

import atexit
import errno
import glob
import hashlib
import lzma
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import fsspec
from fsspec.implementations.local import LocalFileSystem
from fsspec.utils import glob_translate

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
ZIP_SUFFIXES = (".zip",)
# Remote files are fetched this many at a time: concurrent requests, bounded memory.
_REMOTE_READ_GROUP = 8
# Listing fields that change when a remote object is rewritten, best first (S3's ETag is a content hash for
# single-part uploads; memory:// only records when a file was created).
_VERSION_KEYS = ("ETag", "LastModified", "mtime", "created")
_HASH_CHUNK = 2**20


class Member(NamedTuple):
    """One listed file. ``modified`` is what the source says about the file's version, so that a rerun can tell
    a changed file without reading it: the mtime (ns) of a local file, the ETag or modification time of a remote
    object, the sha256 of a tar member (hashed while listing), the CRC-32 of a zip member; "" when the source says
    nothing or the member is not a regular file."""

    path: str
    size: int
    modified: str


class SourceError(Exception):
    """A member that cannot be read safely. ``kind`` is the catalog's error class."""

    kind = "unreadable"


class UnsafeMember(SourceError):
    kind = "unsafe_path"


class NotRegular(SourceError):
    kind = "not_regular"


class TooLarge(SourceError):
    kind = "too_large"


class Missing(SourceError):
    kind = "missing"


class CorruptMember(SourceError):
    kind = "corrupt"


class TruncatedMember(SourceError):
    kind = "truncated"


class UnsupportedMember(SourceError):
    kind = "unsupported"


class DamagedArchive(SourceError):
    """The archive itself ends early or is garbled; members listed before the damage stay usable."""

    kind = "truncated"


def check_name(path: str) -> None:
    """Refuse member names that could escape a destination folder if someone wrote them to disk."""
    if not path or path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path):
        raise UnsafeMember(f"absolute member name {path!r}")
    if ".." in re.split(r"[\\/]", path):
        raise UnsafeMember(f"member name {path!r} contains '..'")


class Source:
    """Common interface; see the module docstring."""

    url: str

    def iter_members(self) -> Iterator[Member]:
        raise NotImplementedError

    def read_many(self, paths: Iterable[str], max_bytes: int | None = None,
                  errors: str = "raise") -> Iterator[tuple[str, bytes | SourceError]]:
        """Yield ``(path, bytes)`` once for each path: in the order asked, except that a tar archive yields
        in archive order (one streaming pass per call, stopping after the last wanted member).

        With ``errors="return"`` a member that cannot be read safely comes back as ``(path, SourceError)``
        instead of raising, so one bad member does not stop a batch. I/O failures of the storage itself
        (network, permissions) always raise: they are worth a retry, not a verdict on the file.
        """
        if errors not in ("raise", "return"):
            raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")
        for path, data in self._read_many(list(dict.fromkeys(paths)), max_bytes):
            if isinstance(data, SourceError) and errors == "raise":
                raise data
            yield path, data

    def read(self, path: str, max_bytes: int | None = None) -> bytes:
        for _, data in self.read_many([path], max_bytes):
            return data
        raise Missing(f"{path!r} not found in {self.url}")

    def _read_many(self, paths: list[str], max_bytes: int | None) -> Iterator[tuple[str, bytes | SourceError]]:
        raise NotImplementedError


def normalise_url(url: str | os.PathLike) -> str:
    """The one spelling of a source: local paths become absolute (workers may run in another folder)."""
    url = os.fspath(url)
    return url if "://" in url else os.path.abspath(os.path.expanduser(url))


def open_source(url: str | os.PathLike) -> Source:
    """Pick the reader for ``url``: a glob, a tar or zip archive, or a folder (local path or fsspec URL)."""
    url = normalise_url(url)
    lower = url.lower()
    if glob.has_magic(url):
        return TreeSource(url)
    if lower.endswith(TAR_SUFFIXES):
        return TarSource(url)
    if lower.endswith(ZIP_SUFFIXES):
        return ZipSource(url)
    return TreeSource(url)


def _version(info: dict) -> str:
    return next((info[key] for key in _VERSION_KEYS if info.get(key) is not None), "")


def _too_large(path: str, size: int, max_bytes: int | None) -> TooLarge | None:
    if max_bytes is not None and size > max_bytes:
        return TooLarge(f"{path}: {size} bytes is over the {max_bytes}-byte limit")
    return None


class TreeSource(Source):
    """A folder walked recursively, or a glob (``**`` crosses folders); paths are relative to the folder
    (for a glob: to the part of the pattern before its first wildcard)."""

    def __init__(self, url: str):
        self.url = url
        self.fs, full = fsspec.core.url_to_fs(url)
        full = full.rstrip("/") or "/"
        self.local = isinstance(self.fs, LocalFileSystem)
        if glob.has_magic(full):
            parts = full.split("/")
            first = next(i for i, part in enumerate(parts) if glob.has_magic(part))
            self.root = "/".join(parts[:first]) or "/"
            self.pattern = re.compile(glob_translate(full))
        else:
            self.root, self.pattern = full, None
        if self.pattern is None and self.fs.isfile(self.root):
            raise NotADirectoryError(f"source {url} is a file, not a folder or an archive saepress reads "
                                     f"({', '.join(TAR_SUFFIXES + ZIP_SUFFIXES)})")
        if not self.fs.isdir(self.root):
            raise FileNotFoundError(f"source folder {self.root} does not exist ({url})")

    def _relative(self, full: str) -> str:
        return full[len(self.root):].lstrip("/")

    def iter_members(self) -> Iterator[Member]:
        entries = self._walk_local() if self.local else self._walk_remote()
        for full, size, modified in sorted(entries):
            if self.pattern is None or self.pattern.match(full):
                yield Member(self._relative(full), size, modified)

    def _walk_local(self) -> Iterator[tuple[str, int, str]]:
        # os.walk does not descend into symlinked folders; they are listed as members (and refused on read)
        # so that nothing under the source disappears without a catalog row.
        for folder, dirs, files in os.walk(self.root):
            for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
                full = os.path.join(folder, name)
                checked = self._inspect_local(full)
                if isinstance(checked, SourceError):
                    yield full, 0, ""
                else:
                    yield full, checked.st_size, str(checked.st_mtime_ns)

    def _inspect_local(self, full: str) -> os.stat_result | SourceError:
        """Status of a readable regular file, or why it must not be opened (checked without opening it)."""
        path = self._relative(full)
        # Resolving the whole path also catches a link in a parent folder (a hand-edited catalog path).
        root = os.path.realpath(self.root)
        if os.path.commonpath([root, os.path.realpath(full)]) != root:
            return UnsafeMember(f"{path} is a symlink that points outside the source")
        try:
            st = os.stat(full)
        except FileNotFoundError:
            if os.path.lexists(full):
                return NotRegular(f"{path} is a broken symlink")
            raise
        if not stat.S_ISREG(st.st_mode):
            return NotRegular(f"{path} is not a regular file (folder link, device or fifo)")
        return st

    def _walk_remote(self) -> Iterator[tuple[str, int, str]]:
        self.fs.invalidate_cache(self.root)  # long-lived workers must see files added since the last run
        found = self.fs.find(self.root, detail=True)
        for full, info in found.items():
            if info.get("type", "file") == "file":
                version = _version(info)
                yield full.rstrip("/"), int(info.get("size") or 0), str(version)

    def _read_many(self, paths, max_bytes):
        if self.local:
            for path in paths:
                yield path, self._read_local(path, max_bytes)
            return
        for start in range(0, len(paths), _REMOTE_READ_GROUP):
            yield from self._read_remote(paths[start:start + _REMOTE_READ_GROUP], max_bytes)

    def _read_local(self, path: str, max_bytes: int | None) -> bytes | SourceError:
        try:
            check_name(path)
            full = os.path.join(self.root, path)
            st = self._inspect_local(full)
            if isinstance(st, SourceError):
                return st
            if problem := _too_large(path, st.st_size, max_bytes):
                return problem
            with open(full, "rb") as handle:
                data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
            return _too_large(path, len(data), max_bytes) or data
        except FileNotFoundError:
            return Missing(f"{path} not found in {self.url}")
        except PermissionError as exc:
            return SourceError(f"{path}: {exc.strerror}")
        except SourceError as exc:
            return exc

    def _read_remote(self, paths: list[str], max_bytes: int | None):
        safe, results = [], {}
        for path in paths:
            try:
                check_name(path)
                safe.append(path)
            except SourceError as exc:
                results[path] = exc
        if safe:
            fulls = [posixpath.join(self.root, path) for path in safe]
            # Range reads cap memory without a size request per file; async filesystems fetch them together.
            end = None if max_bytes is None else max_bytes + 1
            blobs = self.fs.cat_ranges(fulls, [0] * len(fulls), [end] * len(fulls), on_error="return")
            for path, full, blob in zip(safe, fulls, blobs):
                if isinstance(blob, FileNotFoundError):
                    results[path] = Missing(f"{path} not found in {self.url}")
                elif isinstance(blob, OSError) and blob.errno == errno.EINVAL and self.fs.size(full) == 0:
                    results[path] = b""  # S3 refuses any byte range of an empty object
                elif isinstance(blob, BaseException):
                    raise blob
                else:
                    results[path] = _too_large(path, len(blob), max_bytes) or bytes(blob)
        for path in paths:
            yield path, results[path]


def _require_file(url: str) -> None:
    fs, path = fsspec.core.url_to_fs(url)
    if not fs.isfile(path):
        raise FileNotFoundError(f"archive {url} does not exist")


# What a cut or garbled archive raises (tarfile wraps most decompressor errors in ReadError). Other OSErrors
# are storage failures and propagate, so the task is retried instead of the archive being judged.
_ARCHIVE_DAMAGE = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError)


def _member_name(raw: str) -> str:
    """Archive names as the catalog stores them: posix separators, no leading './'."""
    name = raw.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


class _Names:
    """Catalog names of an archive's members, in archive order: the n-th member with a name already taken is
    ``stem~n.ext`` (extracting the archive would let the last one replace the others; saepress keeps every one).
    The same archive gives the same names on every pass."""

    def __init__(self):
        self.taken: set[str] = set()

    def __call__(self, raw: str) -> str:
        name = candidate = _member_name(raw)
        stem, ext = posixpath.splitext(name)
        n = 2
        while candidate in self.taken:
            candidate, n = f"{stem}~{n}{ext}", n + 1
        self.taken.add(candidate)
        return candidate


class TarSource(Source):
    """A tar archive (plain, gzip, bz2 or xz) read as a stream: no seeking, so it works behind any URL."""

    def __init__(self, url: str):
        self.url = url
        _require_file(url)

    def _entries(self) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo, str]]:
        names = _Names()
        try:
            with fsspec.open(self.url, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
                for info in tar:
                    if not info.isdir():
                        yield tar, info, names(info.name)
        except _ARCHIVE_DAMAGE as exc:
            raise DamagedArchive(f"{self.url} is damaged or truncated: {exc}") from None

    def iter_members(self):
        for tar, info, path in self._entries():
            if not info.isreg():
                yield Member(path, 0, "")
                continue
            # The stream passes over every member's bytes anyway, so hashing them is cheap, and it tells a
            # changed member even when the archive was rebuilt with the old (or fixed) mtimes.
            digest = hashlib.sha256()
            try:
                member = tar.extractfile(info)
                while chunk := member.read(_HASH_CHUNK):
                    digest.update(chunk)
            except _ARCHIVE_DAMAGE as exc:
                yield Member(path, info.size, "")
                raise DamagedArchive(f"{self.url} is damaged or truncated: {exc}") from None
            yield Member(path, info.size, f"sha256:{digest.hexdigest()}")

    def _read_many(self, paths, max_bytes):
        if (spool := _spooled(self)) is not None:
            yield from spool.read_many(paths, max_bytes)
            return
        yield from self._stream_many(paths, max_bytes)

    def _stream_many(self, paths, max_bytes):
        wanted = set(paths)
        try:
            for tar, info, path in self._entries():
                if path not in wanted:
                    continue
                wanted.discard(path)
                yield path, self._read_member(tar, info, path, max_bytes)
                if not wanted:
                    break
        except DamagedArchive as exc:
            for path in sorted(wanted):
                yield path, TruncatedMember(f"{path}: {exc}")
            return
        for path in sorted(wanted):
            yield path, Missing(f"{path} not found in {self.url}")

    @staticmethod
    def _refusal(info, path, max_bytes) -> SourceError | None:
        """Why a member is not read at all (decided from its header), or None."""
        try:
            check_name(path)
        except SourceError as exc:
            return exc
        if not info.isreg():
            return NotRegular(f"{path} is a link or special file inside the archive; links are not followed")
        return _too_large(path, info.size, max_bytes)

    @staticmethod
    def _read_member(tar, info, path, max_bytes, out=None) -> bytes | SourceError | None:
        """The member's bytes (or, given ``out``, None after copying them there in chunks) or why not."""
        if problem := TarSource._refusal(info, path, max_bytes):
            return problem
        try:
            member = tar.extractfile(info)
            if out is None:
                return member.read()
            shutil.copyfileobj(member, out, _HASH_CHUNK)
            return None
        except (tarfile.TarError, EOFError) as exc:
            return TruncatedMember(f"{path}: archive ends inside this member ({exc})")


class _Spool:
    """One decompressed pass over a compressed tar, kept for this process: member bytes back to back in a
    temporary file, indexed by path. Without it every batch of a .tar.gz decompresses the stream from its start
    again (the work grows with the square of the archive); with it each worker process decompresses it once."""

    def __init__(self, source: TarSource):
        self.url = source.url
        handle, self.file = tempfile.mkstemp(prefix="saepress-tar-", suffix=".members")
        atexit.register(_remove_quietly, self.file)
        self.index: dict[str, tuple[tarfile.TarInfo, int, SourceError | None]] = {}
        try:
            with os.fdopen(handle, "wb") as out:
                for tar, info, path in source._entries():
                    offset = out.tell()
                    self.index[path] = (info, offset, TarSource._read_member(tar, info, path, None, out))
        except BaseException:
            _remove_quietly(self.file)
            raise

    def read_many(self, paths, max_bytes):
        with open(self.file, "rb") as spool:
            for path in paths:
                if path not in self.index:
                    yield path, Missing(f"{path} not found in {self.url}")
                    continue
                info, offset, problem = self.index[path]
                if problem := problem or _too_large(path, info.size, max_bytes):
                    yield path, problem
                    continue
                spool.seek(offset)
                yield path, spool.read(info.size)


# Compressed archives decompressed once in this process, keyed by URL and the archive's version (a rewritten
# archive is decompressed again). Plain tars are read as a stream: nothing to save there.
_SPOOLS: dict[tuple[str, str], _Spool] = {}


def _spooled(source: TarSource) -> _Spool | None:
    if source.url.lower().endswith(".tar"):
        return None
    fs, path = fsspec.core.url_to_fs(source.url)
    info = fs.info(path)
    key = (source.url, f"{info.get('size')}:{_version(info)}")
    if key not in _SPOOLS:
        try:
            _SPOOLS[key] = _Spool(source)
        except DamagedArchive:
            return None  # the streaming reader says which members a damaged archive still gives
    return _SPOOLS[key]


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


class ZipSource(Source):
    """A zip archive read through its central directory (random access; fsspec files are seekable)."""

    def __init__(self, url: str):
        self.url = url
        _require_file(url)

    def _open(self):
        raw = fsspec.open(self.url, "rb").open()
        try:
            return raw, zipfile.ZipFile(raw)
        except (zipfile.BadZipFile, OSError) as exc:
            raw.close()
            raise DamagedArchive(f"{self.url} is not a readable zip archive: {exc}") from None

    @staticmethod
    def _members(archive: zipfile.ZipFile) -> Iterator[tuple[str, zipfile.ZipInfo]]:
        names = _Names()
        for info in archive.infolist():
            if not info.is_dir():
                yield names(info.filename), info

    def iter_members(self):
        raw, archive = self._open()
        with raw, archive:
            for path, info in self._members(archive):
                yield Member(path, 0 if _zip_is_link(info) else info.file_size, f"crc32:{info.CRC:08x}")

    def _read_many(self, paths, max_bytes):
        raw, archive = self._open()
        with raw, archive:
            infos = dict(self._members(archive))
            for path in paths:
                info = infos.get(path)
                yield path, (Missing(f"{path} not found in {self.url}") if info is None
                             else self._read_member(archive, info, path, max_bytes))

    @staticmethod
    def _read_member(archive, info, path, max_bytes) -> bytes | SourceError:
        try:
            check_name(path)
        except SourceError as exc:
            return exc
        if _zip_is_link(info):
            return NotRegular(f"{path} is a link inside the archive; links are not followed")
        if info.flag_bits & 0x1:
            return UnsupportedMember(f"{path} is encrypted")
        if problem := _too_large(path, info.file_size, max_bytes):
            return problem
        try:
            with archive.open(info) as member:
                # The declared size can lie (zip bombs): never read past the limit.
                data = member.read() if max_bytes is None else member.read(max_bytes + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
            kind = UnsupportedMember if isinstance(exc, NotImplementedError) else CorruptMember
            return kind(f"{path}: {exc}")
        return _too_large(path, len(data), max_bytes) or data


def _zip_is_link(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)

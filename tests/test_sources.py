"""Source readers on real folders, globs, archives and memory:// storage; safety rules on read."""
from __future__ import annotations

import fsspec
import pytest
from fixtures_archives import (TEST_MAX_BYTES, Case, common_cases, folder_extras, rgb_png, tar_extras, write_folder,
                               write_fs, write_tar, write_zip, zip_extras)

from tasks import sources
from tasks.ingest import list_members
from tasks.sources import Missing, NotRegular, TooLarge, TruncatedMember, UnsafeMember, open_source

CASES = common_cases()
FILES = {case.path: case.data for case in CASES}


def _memory_root(name: str) -> str:
    fs = fsspec.filesystem("memory")
    root = f"/sources-test/{name}"
    if fs.exists(root):
        fs.rm(root, recursive=True)
    return root


@pytest.fixture(params=["folder", "tar", "tar.gz", "tar.xz", "zip", "memory", "memory-tar.gz"])
def source_url(request, tmp_path) -> str:
    kind = request.param
    if kind == "folder":
        return str(write_folder(tmp_path / "src", CASES))
    if kind.startswith("tar") or kind == "zip":
        path = tmp_path / f"src.{kind}"
        return str(write_zip(path, CASES) if kind == "zip" else write_tar(path, CASES))
    root = _memory_root(kind)
    if kind == "memory":
        return "memory://" + write_fs(fsspec.filesystem("memory"), root, CASES)
    local = write_tar(tmp_path / "src.tar.gz", CASES)
    fsspec.filesystem("memory").pipe_file(f"{root}/src.tar.gz", local.read_bytes())
    return f"memory://{root}/src.tar.gz"


def test_lists_every_file_with_its_size_and_version(source_url):
    members = list(open_source(source_url).iter_members())
    assert [(m.path, m.size) for m in members] == [(c.path, len(c.data)) for c in CASES]
    assert all(m.modified for m in members)


def test_read_many_returns_each_requested_file_once(source_url):
    wanted = ["bad/notes.jpg", "a/red.png", "b/animated.gif", "a/red.png"]
    got = list(open_source(source_url).read_many(wanted))
    assert sorted(got) == [(path, FILES[path]) for path in sorted(set(wanted))]


def test_read_of_a_missing_member_raises(source_url):
    with pytest.raises(Missing):
        open_source(source_url).read("no/such.png")


def test_too_large_members_are_refused_unread(source_url):
    results = dict(open_source(source_url).read_many(["bad/big.bmp", "a/red.png"], max_bytes=TEST_MAX_BYTES,
                                                     errors="return"))
    assert isinstance(results["bad/big.bmp"], TooLarge)
    assert results["a/red.png"] == FILES["a/red.png"]


@pytest.mark.parametrize("suffix,once_in_all", [(".tar", False), (".tar.gz", True), (".tar.xz", True)])
def test_a_tar_is_read_in_one_pass_per_batch_and_a_compressed_one_once_in_all(tmp_path, monkeypatch, suffix,
                                                                                once_in_all):
    url = str(write_tar(tmp_path / f"a{suffix}", CASES))
    opened = []
    real_open = sources.fsspec.open
    monkeypatch.setattr(sources.fsspec, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    batches = [list(FILES)[i:i + 2] for i in range(0, len(FILES), 2)]
    for batch in batches:
        assert dict(open_source(url).read_many(batch)) == {path: FILES[path] for path in batch}
    assert len(opened) == (1 if once_in_all else len(batches))


@pytest.mark.parametrize("name", ["../escape.png", "/etc/escape.png", "a/../../escape.png", "C:/x.png", "a\\..\\x"])
def test_unsafe_names_are_refused_before_any_access(tmp_path, name):
    src = open_source(write_folder(tmp_path / "src", CASES[:2]))
    with pytest.raises(UnsafeMember):
        src.read(name)


@pytest.mark.parametrize("writer,extras", [(write_tar, tar_extras), (write_zip, zip_extras)])
def test_archive_links_and_unsafe_names_are_refused(tmp_path, writer, extras):
    cases = extras()
    url = str(writer(tmp_path / ("a.tar" if writer is write_tar else "a.zip"), cases))
    results = dict(open_source(url).read_many([c.path for c in cases], errors="return"))
    assert {path: type(value) for path, value in results.items()} == {
        c.path: {"unsafe_path": UnsafeMember, "not_regular": NotRegular}[c.error] for c in cases}


def test_folder_symlinks_never_leave_the_source(tmp_path):
    cases = sorted(CASES + folder_extras(tmp_path / "outside"), key=lambda c: c.path)
    root = write_folder(tmp_path / "src", cases)
    (root / "dangling.png").symlink_to(root / "gone.png")
    src = open_source(root)
    assert src.read("inside_link.png") == FILES["a/red.png"]
    with pytest.raises(UnsafeMember):
        src.read("outside_link.png")
    with pytest.raises(UnsafeMember):
        src.read("linked_dir/secret.png")  # a path through a linked folder, as a hand-edited catalog might hold
    for name in ("pipe.png", "b_link", "dangling.png"):  # a fifo is never opened (it would block)
        with pytest.raises(NotRegular):
            src.read(name)


@pytest.mark.parametrize("pattern,expected", [
    ("**/*.png", sorted(p for p in FILES if p.endswith(".png"))),
    ("b/*.png", ["deep16.png", "palette_alpha.png", "red_copy.png"]),  # relative to the fixed part
    ("*/*.gif", ["b/animated.gif"]),
])
@pytest.mark.parametrize("where", ["folder", "memory"])
def test_glob_sources(tmp_path, pattern, expected, where):
    if where == "folder":
        root = str(write_folder(tmp_path / "src", CASES))
    else:
        root = "memory://" + write_fs(fsspec.filesystem("memory"), _memory_root("glob"), CASES)
    src = open_source(f"{root}/{pattern}")
    assert [member.path for member in src.iter_members()] == expected
    fixed = pattern.split("*")[0]
    assert dict(src.read_many(expected[:1])) == {expected[0]: FILES[fixed + expected[0]]}


def test_truncated_archive_keeps_members_before_the_damage(tmp_path):
    data = write_tar(tmp_path / "a.tar.gz", [c for c in CASES if c.path.startswith("a/")] +
                     [Case("z/large.png", rgb_png(200, 200, 5), "ok")]).read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) - 2000])
    listing = list_members(str(cut))
    members, problem = listing["members"], listing["damage"]
    assert [path for path, *_ in members][:2] == ["a/photo.jpg", "a/red.png"]
    assert problem and "damaged or truncated" in problem
    results = dict(open_source(str(cut)).read_many([path for path, *_ in members], errors="return"))
    assert results["a/red.png"] == FILES["a/red.png"]
    assert all(isinstance(results[p], TruncatedMember) for p, *_ in members if p.startswith("z/"))


def test_missing_source_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_source(tmp_path / "nothing-here")
    with pytest.raises(FileNotFoundError):
        open_source(tmp_path / "nothing.tar.gz")


def test_a_plain_file_as_source_is_named_as_such(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"not a folder")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder or an archive"):
        open_source(tmp_path / "photo.jpg")
    assert "is a file" in list_members(str(tmp_path / "photo.jpg"))["missing"]


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_every_member_of_a_repeated_name_is_kept(tmp_path, kind):
    import warnings

    members = [("a/x.jpg", b"first"), ("a/x~2.jpg", b"real name"), ("a/x.jpg", b"second"), ("a/x.jpg", b"third")]
    cases = [Case(name, data, "ok") for name, data in members]
    path = tmp_path / f"dup.{kind}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate name
        url = str(write_zip(path, cases) if kind == "zip" else write_tar(path, cases))
    source = open_source(url)
    names = [member.path for member in source.iter_members()]
    assert names == ["a/x.jpg", "a/x~2.jpg", "a/x~3.jpg", "a/x~4.jpg"]
    assert dict(source.read_many(names)) == dict(zip(names, [b"first", b"real name", b"second", b"third"]))

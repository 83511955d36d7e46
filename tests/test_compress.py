"""compress -> verify -> decompress / get on a small real archive: nothing lost, resumable, incremental."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hostile import photo
from PIL import Image

pytestmark = pytest.mark.slow


def make_archive(folder: Path, count: int = 4, size: int = 48) -> dict[str, str]:
    """Small crops of the shipped sample photos plus the awkward cases; returns path -> kind expected after
    compression."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    for n in range(count):
        photo(n, size + 8 * n, size).save(folder / f"img{n}.png")
        expected[f"img{n}.png"] = "coded"
    (folder / "sub").mkdir(exist_ok=True)
    with Image.open(folder / "img0.png") as image:
        image.convert("L").save(folder / "sub" / "gray.jpg", quality=90)
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise for display
        image.save(folder / "sub" / "rotated.jpg", exif=exif.tobytes(), quality=90)
    (folder / "sub" / "copy.png").write_bytes((folder / "img1.png").read_bytes())
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "broken.png").write_bytes((folder / "img2.png").read_bytes()[:120])
    expected.update({"sub/gray.jpg": "coded", "sub/rotated.jpg": "coded", "sub/copy.png": "duplicate",
                     "notes.txt": "passthrough", "broken.png": "passthrough"})
    return expected


def manifest(sharddir: Path) -> dict:
    from tasks import shards, txlog

    return txlog.read_manifest(*shards.open_dir(str(sharddir)))


def stored_ids(sharddir: Path) -> list[str]:
    import pyarrow.parquet as pq

    return [i for s in manifest(sharddir)["shards"] for i in pq.read_table(sharddir / s["name"]).column("id").to_pylist()]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    folder = tmp_path_factory.mktemp("archive") / "src"
    return folder, make_archive(folder)


@pytest.fixture(scope="module")
def compressed(archive, tmp_path_factory, prefect_harness):
    from flows.compress import compress_flow

    folder, expected = archive
    out = tmp_path_factory.mktemp("shards") / "set"
    result = compress_flow(source=str(folder), out=str(out), shard_max_items=3, quality=60)
    return out, result


def test_compress_reports_coded_bits_over_coded_pixels_and_the_median(compressed):
    import statistics

    import pyarrow.parquet as pq

    out, result = compressed
    rows = [row for s in manifest(out)["shards"] for row in pq.read_table(out / s["name"]).to_pylist()
            if row["kind"] == "coded"]
    assert len({(row["width"], row["height"]) for row in rows}) > 1  # sizes differ: a mean over items would differ
    totals = result["totals"]
    assert totals["bpp"] == pytest.approx(8 * sum(r["compressed_bytes"] for r in rows)
                                          / sum(r["width"] * r["height"] for r in rows))
    assert totals["median_bpp"] == pytest.approx(statistics.median(r["bpp"] for r in rows))
    assert totals["median_psnr"] == pytest.approx(statistics.median(r["psnr"] for r in rows))
    assert f"{len(rows)} image(s) at {totals['bpp']:.3f} bpp (all coded bits / all coded pixels)" in " ".join(
        result["report"])


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium(page: Path, profile: Path, *args: str) -> str:
    """Open ``page`` in headless Chromium (Debian package `chromium`) with a fresh profile; its stdout."""
    import shutil
    import subprocess

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "headless Chromium is needed: apt-get install -y chromium (see the README's test command)"
    return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
                          capture_output=True, text=True, timeout=120, check=True).stdout


def shown(dom: str, key: str) -> str:
    import re

    found = re.search(rf'id="{key}">([^<]*)<', dom)
    assert found, f"the rendered report has no {key} figure"
    return found.group(1)


def test_the_job_report_shows_the_manifest_numbers_when_rendered(compressed, tmp_path):
    import pyarrow.parquet as pq

    from mlflow import MlflowClient

    out, result = compressed
    page = out / "report.html"
    assert f"report: {page}" in result["report"]
    dom = chromium(page, tmp_path / "profile", "--dump-dom")
    m = manifest(out)
    totals = m["totals"]
    for key in ("files", "coded", "passthrough", "duplicate", "skipped", "original_bytes", "stored_bytes"):
        assert shown(dom, key) == f"{totals[key]:,}"
    assert shown(dom, "bytes_saved") == f"{totals['original_bytes'] - totals['stored_bytes']:,}"
    rows = [r for s in m["shards"] for r in pq.read_table(out / s["name"]).to_pylist() if r["kind"] == "coded"]
    bpp = 8 * sum(r["compressed_bytes"] for r in rows) / sum(r["width"] * r["height"] for r in rows)
    assert shown(dom, "bpp") == f"{bpp:.3f}"
    assert dom.count('alt="decoded"') == dom.count('alt="original"') == min(len(rows), 6)
    assert 'src="http' not in dom and "<script" not in dom  # self-contained
    chromium(page, tmp_path / "profile2", f"--screenshot={tmp_path / 'report.png'}", "--window-size=1200,2400")
    assert (tmp_path / "report.png").stat().st_size > 10_000
    artifacts = MlflowClient().list_artifacts(m["jobs"][-1]["mlflow_run_id"])
    assert "report.html" in {a.path for a in artifacts}


def test_saepress_report_rebuilds_the_page_for_the_whole_set(compressed, tmp_path):
    from flows.report import report

    import re

    def figures(page: Path) -> dict[str, str]:
        return dict(re.findall(r"id='(\w+)'>([^<]*)<", page.read_text()))

    out, _ = compressed
    before = figures(out / "report.html")
    (out / "report.html").unlink()
    assert report(str(out)) == {"report": [f"report: {out}/report.html"], "problems": []}
    after = figures(out / "report.html")
    assert int(after.pop("generation")) > int(before.pop("generation"))  # the job's last commit came after its page
    assert after == before and len(after) >= 12


def test_compress_accounts_for_every_file(compressed, archive):
    out, result = compressed
    _, expected = archive
    assert result["problems"] == []
    totals = manifest(out)["totals"]
    kinds = list(expected.values())
    assert (totals["coded"], totals["passthrough"], totals["duplicate"], totals["skipped"]) == (
        kinds.count("coded"), kinds.count("passthrough"), kinds.count("duplicate"), 0)
    assert totals["files"] == len(expected)
    assert any(line.startswith(f"catalog: {len(expected)} files = ") for line in result["report"])
    assert sorted(stored_ids(out)) == sorted(set(stored_ids(out)))
    assert len(manifest(out)["shards"]) >= 3  # bounded by shard_max_items


def test_manifest_lists_shards_with_checksums_and_model_copy(compressed):
    out, _ = compressed
    m = manifest(out)
    for entry in m["shards"]:
        data = (out / entry["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
    [fingerprint] = m["models"]
    from sae_model import Codec

    assert Codec.load(str(out / "models" / fingerprint)).fingerprint == fingerprint
    assert m["jobs"][-1]["parameters"]["quality"] == 60 and m["jobs"][-1]["finished"]


@pytest.mark.parametrize("model", [None, "sae_model:pretrained"])
def test_without_a_champion_compress_uses_the_shipped_default(model, tmp_path):
    from flows.settings import Settings
    from sae_model import Codec
    from tasks.model import resolve_model

    Settings.resolve().prepare()  # the session's SQLite registry, where this name has no versions
    out = tmp_path / "set"
    resolved = resolve_model.fn(model, "codec-never-registered", str(out))
    default = Codec.pretrained().fingerprint
    assert resolved == {"uri": "sae_model:pretrained", "version": None, "run_id": None, "fingerprint": default}
    assert Codec.load(str(out / "models" / default)).fingerprint == default


@pytest.mark.parametrize("decode", [False, True])
def test_verify_clean_set(compressed, decode):
    from flows.access import verify

    out, _ = compressed
    result = verify(str(out), decode=decode)
    assert result["problems"] == [], result
    assert result["report"][0].endswith("OK")


def test_decompress_writes_every_path(compressed, archive, tmp_path):
    from flows.compress import decompress_flow

    out, _ = compressed
    folder, expected = archive
    restored = tmp_path / "restored"
    result = decompress_flow(sharddir=str(out), out=str(restored))
    assert result["problems"] == [] and result["written"] == len(expected)
    for path, kind in expected.items():
        if kind == "passthrough":
            assert (restored / path).read_bytes() == (folder / path).read_bytes()
            continue
        name = path if path.endswith(".png") else f"{path}.png"
        with Image.open(restored / name) as back, Image.open(folder / path) as original:
            assert back.format == "PNG"
            if path == "sub/rotated.jpg":  # EXIF orientation 6 applied: width and height swap
                assert back.size == original.size[::-1]
            else:
                assert back.size == original.size
            if path == "sub/gray.jpg":
                assert back.mode == "L"


@pytest.mark.parametrize("key", ["id", "path", "duplicate path"])
def test_get_one_item(compressed, archive, tmp_path, key):
    from flows.access import get_image

    out, _ = compressed
    folder, _ = archive
    notes = (folder / "notes.txt").read_bytes()
    image = {"id": hashlib.sha256(notes).hexdigest(), "path": "notes.txt", "duplicate path": "sub/copy.png"}[key]
    result = get_image(str(out), image, str(tmp_path / "one"))
    assert result["problems"] == []
    if key == "duplicate path":
        with Image.open(tmp_path / "one") as back:
            assert back.size == Image.open(folder / "img1.png").size
    else:
        assert (tmp_path / "one").read_bytes() == notes


def test_images_above_max_pixels_are_refused_and_listed_the_rest_restored(compressed, archive, tmp_path):
    from flows.access import get_image
    from flows.compress import decompress_flow

    out, _ = compressed
    folder, expected = archive
    with Image.open(folder / "img0.png") as image:
        limit = image.width * image.height - 1
    got = get_image(str(out), "img0.png", str(tmp_path / "one.png"), max_pixels=limit)
    assert "ImageTooLargeError" in got["problems"][0] and "--max-pixels" in got["problems"][0]
    assert not (tmp_path / "one.png").exists()
    assert get_image(str(out), "img0.png", str(tmp_path / "one.png"), max_pixels=limit + 1)["problems"] == []
    result = decompress_flow(sharddir=str(out), out=str(tmp_path / "restored"), max_pixels=1)
    coded = [p for p, kind in expected.items() if kind != "passthrough"]
    assert result["written"] == len(expected) - len(coded)
    assert sum("ImageTooLargeError" in p for p in result["problems"]) == len(set(coded) - {"sub/copy.png"})
    assert (tmp_path / "restored" / "notes.txt").exists()


def test_get_unknown_is_a_config_error(compressed, tmp_path):
    from flows.access import get_image
    from tasks.errors import ConfigError

    with pytest.raises(ConfigError, match="neither"):
        get_image(str(compressed[0]), "no/such.png", str(tmp_path / "x"))


def test_rerun_is_idempotent_and_growth_is_incremental(compressed, archive, prefect_harness):
    from flows.access import verify
    from flows.compress import compress_flow

    out, _ = compressed
    folder, expected = archive
    before = stored_ids(out)
    again = compress_flow(source=str(folder), out=str(out), shard_max_items=3, quality=60)
    assert again["problems"] == [] and again["totals"]["new_items"] == 0
    assert sorted(stored_ids(out)) == sorted(before)

    with Image.open(folder / "img3.png") as image:
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "new.png")
    (folder / "sub" / "copy2.png").write_bytes((folder / "img0.png").read_bytes())
    grown = compress_flow(source=str(folder), out=str(out), shard_max_items=3, quality=60)
    assert grown["problems"] == [] and grown["totals"]["new_items"] == 1
    assert sorted(stored_ids(out)) == sorted(set(stored_ids(out)))
    assert manifest(out)["totals"]["files"] == len(expected) + 2
    assert manifest(out)["totals"]["duplicate"] == 2
    assert verify(str(out))["problems"] == []


@pytest.mark.parametrize("rate", [{"target_bpp": 1.0}, {"target_psnr": 30.0}])
def test_skip_rejected_and_rate_control(archive, tmp_path, prefect_harness, rate):
    from flows.access import verify
    from flows.compress import compress_flow

    folder, expected = archive
    result = compress_flow(source=str(folder), out=str(tmp_path / "s"), skip_rejected=True, **rate)
    assert result["problems"] == []
    m = manifest(tmp_path / "s")
    assert m["totals"]["skipped"] >= 2 and m["totals"]["passthrough"] == 0
    assert {e["path"] for e in m["skipped"]} >= {"notes.txt", "broken.png"}
    assert any(line.startswith("skipped: notes.txt") for line in result["report"])
    assert m["jobs"][-1]["parameters"][next(iter(rate))] == next(iter(rate.values()))
    assert verify(str(tmp_path / "s"))["problems"] == []


def test_two_rates_at_once_is_a_config_error(archive, tmp_path, prefect_harness):
    from flows.compress import compress_flow
    from tasks.errors import ConfigError

    with pytest.raises(ConfigError, match="one of"):
        compress_flow(source=str(archive[0]), out=str(tmp_path / "s"), quality=50, target_bpp=1.0)


def test_missing_or_altered_model_is_a_clear_error(compressed, tmp_path):
    import shutil

    from flows.access import get_image, verify
    from tasks import compress as units

    out, _ = compressed
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    [fingerprint] = manifest(copy)["models"]
    shutil.rmtree(copy / "models" / fingerprint)
    units._CODECS.clear()
    result = verify(str(copy), decode=True)
    assert any("missing: model" in p for p in result["problems"])
    assert any("cannot be decoded with it" in p for p in result["problems"])
    got = get_image(str(copy), "img0.png", str(tmp_path / "x.png"))
    assert got["problems"] and not (tmp_path / "x.png").exists()

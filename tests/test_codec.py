"""Round trips, modes, odd sizes, metadata, determinism and the public API of sae_model."""

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sae_model
from sae_model import Codec, CodecError, UnsupportedImageError, psnr

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def codec():
    return Codec.pretrained()


def photo(h, w, seed=0):
    """Smooth colour gradients plus texture, so PSNR is meaningful."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 90 * np.sin(x / 17 + c) * np.cos(y / 23 - c) for c in range(3)], -1)
    return np.clip(base + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("h,w", [(1, 1), (7, 13), (17, 3000), (3000, 17), (64, 64), (33, 40)])
def test_round_trip_sizes(codec, h, w):
    img = photo(h, w)
    out = codec.decode(codec.encode(img, quality=70))
    assert out.mode == "RGB" and out.size == (w, h)
    if h * w > 64:
        assert psnr(img, np.asarray(out)) > 30


def test_large_image_uses_tiles(codec):
    img = photo(1100, 1030)
    out = np.asarray(codec.decode(codec.encode(img, quality=40)))
    assert out.shape == img.shape and psnr(img, out) > 28


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_modes_kept(codec, mode):
    rgb = photo(20, 30)
    img = Image.fromarray(rgb).convert(mode)
    if "A" in mode:
        a = np.random.default_rng(1).integers(0, 256, (20, 30), dtype=np.uint8)
        img.putalpha(Image.fromarray(a))
    out = codec.decode(codec.encode(img, quality=90))
    assert out.mode == mode and out.size == img.size
    if "A" in mode:  # alpha is lossless
        assert np.array_equal(np.asarray(out)[..., -1], np.asarray(img)[..., -1])
    assert psnr(np.asarray(img.convert("RGB")), np.asarray(out.convert("RGB"))) > 31


@pytest.mark.parametrize("quality", [20, 50, 90])
def test_quality_means_about_jpegs_psnr_in_fewer_bytes(codec, quality):
    """The scale is calibrated on Pillow's JPEG (encoder.QUALITY_KNOTS, bench/calibrate.py)."""
    img = photo(64, 64)
    data = codec.encode(img, quality=quality)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality, subsampling=2, optimize=True)
    jpeg = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    assert abs(psnr(img, np.asarray(codec.decode(data))) - psnr(img, jpeg)) < 1.0
    assert len(data) < len(buf.getvalue())


def test_palette_with_transparency(codec):
    img = Image.fromarray(photo(16, 16)).quantize(8)
    img.info["transparency"] = 0
    out = codec.decode(codec.encode(img))
    assert out.mode == "RGBA"
    assert np.array_equal(np.asarray(out)[..., 3], np.asarray(img.convert("RGBA"))[..., 3])
    assert out.info["saepress"]["source_mode"] == "P"


def test_palette_cmyk_16bit_conversions(codec):
    p = codec.decode(codec.encode(Image.fromarray(photo(12, 9)).quantize(16)))
    assert p.mode == "RGB"
    cmyk = Image.fromarray(photo(12, 9)).convert("CMYK")
    out = codec.decode(codec.encode(cmyk, quality=90))
    assert out.mode == "RGB" and out.info["saepress"]["cmyk_to_rgb"]
    assert psnr(np.asarray(cmyk.convert("RGB")), np.asarray(out)) > 30
    a16 = (np.arange(12 * 9, dtype=np.uint16).reshape(12, 9) * 600)
    out = codec.decode(codec.encode(Image.fromarray(a16), quality=100))
    assert out.mode == "L" and out.info["saepress"]["reduced_16bit"]
    assert np.abs(np.asarray(out, np.int16) - (a16 >> 8)).max() <= 3
    assert codec.decode(codec.encode(a16)).mode == "L"


def test_exif_icc_kept_and_orientation_applied(codec):
    img = Image.fromarray(photo(10, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    exif[0x010F] = "saepress-test"
    icc = b"fake-icc-profile" * 4
    buf = io.BytesIO()
    img.save(buf, format="PNG", exif=exif.tobytes(), icc_profile=icc)
    src = Image.open(io.BytesIO(buf.getvalue()))
    out = codec.decode(codec.encode(src, quality=90))
    assert out.size == (10, 20)  # transposed
    assert out.info["icc_profile"] == icc
    kept = Image.Exif()
    kept.load(out.info["exif"])
    assert kept[0x010F] == "saepress-test" and kept.get(0x0112, 1) == 1
    assert out.info["saepress"]["orientation_applied"]


def test_unsupported_input(codec):
    with pytest.raises(UnsupportedImageError):
        codec.encode(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(UnsupportedImageError):
        codec.encode(np.zeros((4, 4), np.float32))
    with pytest.raises(UnsupportedImageError):
        codec.encode("not an image")
    assert issubclass(UnsupportedImageError, CodecError)


def test_quality_is_monotone_in_rate(codec):
    img = photo(48, 64)
    sizes = [len(codec.encode(img, quality=q)) for q in (0, 20, 40, 60, 80, 100)]
    assert sizes == sorted(sizes)


def test_targets(codec):
    img = photo(64, 64)
    data = codec.encode(img, target_bpp=1.0)
    assert len(data) * 8 / 64 / 64 <= 1.0
    assert len(codec.encode(img, target_bpp=1.0 * 1.6)) > len(data)
    data = codec.encode(img, target_psnr=34.0)
    assert psnr(img, np.asarray(codec.decode(data))) >= 34.0
    with pytest.raises(ValueError):
        codec.encode(img, quality=50, target_bpp=1.0)


def test_deterministic_bytes(codec):
    img = photo(40, 56, seed=3)
    assert codec.encode(img, quality=45) == codec.encode(img.copy(), quality=45)
    assert codec.encode(img, quality=45) == Codec.pretrained().encode(img, quality=45)


def test_read_header(codec):
    data = codec.encode(photo(7, 13), quality=50)
    h = sae_model.read_header(data)
    assert (h.width, h.height, h.mode, h.format_version) == (13, 7, "RGB", sae_model.FORMAT_VERSION) == (13, 7, "RGB", 5)
    assert h.fingerprint == codec.fingerprint


def test_save_load_fingerprint(codec, tmp_path):
    codec.save(tmp_path / "m")
    again = Codec.load(tmp_path / "m")
    assert again.fingerprint == codec.fingerprint
    assert (tmp_path / "m" / "config.json").exists()
    again.save(tmp_path / "m2")
    assert (tmp_path / "m2" / "weights.pt").read_bytes() == (tmp_path / "m" / "weights.pt").read_bytes()
    assert hashlib.sha256((tmp_path / "m" / "weights.pt").read_bytes()).hexdigest() == codec.fingerprint


def test_shipped_model_is_small():
    total = sum(p.stat().st_size for p in (ROOT / "sae_model" / "data").rglob("*") if p.is_file())
    assert total < 2_000_000


_DECODE_HASH = """
import hashlib, sys, numpy as np
from sae_model import Codec
data = open(sys.argv[1], 'rb').read()
print(hashlib.sha256(np.asarray(Codec.pretrained().decode(data)).tobytes()).hexdigest())
"""


@pytest.mark.parametrize("how", ["interpreted", "generic_cpu"])
def test_decode_same_pixels_compiled_interpreted_and_for_a_generic_cpu(codec, tmp_path, how):
    """The v2 decoder is numba kernels on one thread (no BLAS, no parallel loops): what can differ
    between machines is the compiled code. Decoding with every kernel run as plain Python
    (NUMBA_DISABLE_JIT: Python's integer semantics) and compiled afresh for a baseline x86-64/ARM
    CPU without the host's vector units (NUMBA_CPU_NAME=generic) must give this process's pixels.
    Small tiles, 4:2:0 chroma and escapes (quality 98) so every kernel path runs."""
    from sae_model import EncoderSettings
    img = photo(24, 20, seed=5)
    path = tmp_path / "s.sae"
    path.write_bytes(codec.encode(img, quality=98, settings=EncoderSettings(subsample=True, tile=16)))
    here = hashlib.sha256(np.asarray(codec.decode(path.read_bytes())).tobytes()).hexdigest()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if how == "interpreted":
        env["NUMBA_DISABLE_JIT"] = "1"
    else:
        env.update(NUMBA_CPU_NAME="generic", NUMBA_CACHE_DIR=str(tmp_path / "kernels"))
    got = subprocess.run([sys.executable, "-c", _DECODE_HASH, str(path)], env=env, check=True,
                         capture_output=True, text=True).stdout.strip()
    assert got == here


_CODE_HASH = """
import hashlib, sys, numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
from sae_model import Codec, EncoderSettings
from tests.test_codec import photo
codec = Codec.pretrained()
data = codec.encode(photo(96, 80, seed=7), quality=60, settings=EncoderSettings(tile=48))
print(hashlib.sha256(data).hexdigest(), hashlib.sha256(np.asarray(codec.decode(data)).tobytes()).hexdigest())
"""


def test_one_and_two_threads_give_the_same_bytes_and_pixels():
    """Every BLAS, OpenMP, numba and torch pool at 1 and at 2 threads: the same stream, the same pixels."""
    got = []
    for n in ("1", "2"):
        env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, MKL_NUM_THREADS=n,
                   NUMBA_NUM_THREADS=n)
        got.append(subprocess.run([sys.executable, "-c", _CODE_HASH, n], env=env, cwd=ROOT, check=True,
                                  capture_output=True, text=True).stdout.split())
    assert got[0] == got[1] and len(got[0]) == 2


def test_evaluate_helpers(codec):
    img = Image.fromarray(photo(32, 32))
    curve = sae_model.evaluate.codec_curve(codec, [img], [20, 50, 80, 95])
    assert [r["quality"] for r in curve] == [20, 50, 80, 95] and all(r["bytes"] > 0 for r in curve)
    ref = sae_model.evaluate.reference_curve("jpeg", [img], [20, 50, 80, 95])
    summary = sae_model.evaluate.summarise(curve + ref)
    assert set(summary["codecs"]) == {"saepress", "jpeg"}
    assert summary["codecs"]["jpeg"]["bd_rate_vs_jpeg"] == pytest.approx(0.0, abs=1e-9)


def test_bd_rate_known_value():
    ref = [(r, 30 + 10 * np.log2(r)) for r in (0.25, 0.5, 1.0, 2.0)]
    half = [(r / 2, p) for r, p in ref]
    assert sae_model.bd_rate(ref, half) == pytest.approx(-50.0, abs=1e-6)
    assert sae_model.bd_rate(ref, ref) == pytest.approx(0.0, abs=1e-9)


def test_psnr():
    a = np.zeros((4, 4, 3), np.uint8)
    assert psnr(a, a) == float("inf")
    assert psnr(a, a + 1) == pytest.approx(20 * np.log10(255), abs=1e-9)


def test_patches_and_atoms(codec):
    rng = np.random.default_rng(0)
    p = sae_model.sample_patches(Image.fromarray(photo(40, 30)), 50, rng)
    assert p.shape == (50, sae_model.PATCH_SPEC["dim"]) and p.dtype == np.float32
    assert sae_model.sample_patches(Image.new("RGB", (5, 5)), 10, rng).shape == (0, 192)
    again = sae_model.sample_patches(Image.fromarray(photo(40, 30)), 50, np.random.default_rng(0))
    assert np.array_equal(p, again)
    assert sae_model.atoms_image(codec).size[0] > 0

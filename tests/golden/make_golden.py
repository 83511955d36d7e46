"""Write the golden streams of the current format version (only when that version is new!).

    python tests/golden/make_golden.py

Streams of older versions (v1_*) stay as they were committed: they prove that old archives
still decode. The golden model lives here (not the shipped one) so retraining the default model
does not touch these streams; test_bitstream_golden.py decodes them and checks the pixel hashes.
The model is loaded when present (training it again would give other weights on another
machine); it is only trained when the folder is empty.
"""

import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from sae_model import FORMAT_VERSION, Codec, TrainConfig, Trainer, sample_patches  # noqa: E402
from sae_model.codec import default_tables  # noqa: E402


def synthetic(h, w, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([128 + 80 * np.sin(x / (5 + c) + y / (7 - c)) for c in range(3)], -1)
    return np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)


def golden_model() -> Codec:
    rng = np.random.default_rng(0)
    patches = sample_patches(Image.fromarray(synthetic(64, 64, 0)), 2000, rng)
    t = Trainer(TrainConfig(K=2, seed=0), device="cpu")
    t.initialize(patches)
    return t.to_codec(default_tables())


def cases():
    exif = Image.Exif()
    exif[0x010F] = "golden"
    rgba = Image.fromarray(synthetic(9, 9, 4)).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.arange(81, dtype=np.uint8).reshape(9, 9) * 3))
    buf = io.BytesIO()
    rgba.save(buf, format="PNG", exif=exif.tobytes(), icc_profile=b"golden-icc")
    return {
        "rgb_24x20_q50": (synthetic(20, 24, 1), 50),
        "rgb_40x33_q80": (synthetic(33, 40, 2), 80),
        "l_7x13_q30": (synthetic(7, 13, 3)[:, :, 0], 30),
        "rgba_9x9_q60_meta": (Image.open(io.BytesIO(buf.getvalue())), 60),
        "rgb_1x1_q10": (synthetic(1, 1, 5), 10),
        "rgb_48x40_q98_escapes": (synthetic(40, 48, 6), 98),
        "rgb_96x64_q70_filtered": (synthetic(64, 96, 7), 70),  # v3 on: its restoration filters are used
    }


def pixel_hash(img: Image.Image) -> str:
    return hashlib.sha256(img.mode.encode() + np.asarray(img).tobytes()).hexdigest()


def main():
    if (HERE / "model" / "weights.pt").exists():
        codec = Codec.load(HERE / "model")
    else:
        codec = golden_model()
        codec.save(HERE / "model")
    path = HERE / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {"fingerprint": codec.fingerprint, "streams": {}}
    assert manifest["fingerprint"] == codec.fingerprint, "older streams need the committed golden model"
    for case, (img, q) in cases().items():
        name = f"v{FORMAT_VERSION}_{case}"
        data = codec.encode(img, quality=q)
        (HERE / f"{name}.sae").write_bytes(data)
        dec = codec.decode(data)
        manifest["streams"][name] = {"quality": q, "mode": dec.mode, "size": list(dec.size),
                                     "pixels_sha256": pixel_hash(dec),
                                     "exif": bool(dec.info.get("exif")), "icc": bool(dec.info.get("icc_profile")),
                                     "format_version": FORMAT_VERSION}
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    print(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()

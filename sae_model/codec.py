"""Codec: a trained model plus the bitstream (container: bitstream.py; payloads: formats/)."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image

from . import bitstream, blockcoder, encoder, formats, imageio, planes, postfilter
from .encoder import EncoderSettings
from .errors import CodecError, CorruptStreamError, ImageTooLargeError, ModelMismatchError
from .planes import N_ACTIVITY, N_EOB_BUCKET, N_NEIGHBOUR, N_RECENT, N_SPREAD, N_TO_EOB, NPRIOR
from .tables import ALPHABET, ESC_BITS, Tables, laplace_counts

WEIGHTS, CONFIG = "weights.pt", "config.json"
DEFAULT_QUALITY = 50
# Decode refuses larger images unless the caller raises the limit: a header is a claim, and a
# few KB of repeated valid tiles can claim 2**28 pixels (bitstream.MAX_PIXELS). The v2 format
# itself bounds little: its adaptive models code a flat block in ~0.0023 bits, so 35 KB can
# hold ~8e9 pixels. Equal to ingest's default max_pixels, so whatever
# compress could read decodes with the default. Peak decode memory: the image (4 bytes/pixel
# in Pillow, plus 3 for an alpha plane being decoded) and one tile's planes.
DEFAULT_MAX_PIXELS = 200_000_000
DEFAULT_SETTINGS = EncoderSettings()


class Codec:
    def __init__(self, weights: dict, config: dict | None = None, raw: bytes | None = None):
        if raw is None:
            buf = io.BytesIO()
            torch.save({k: weights[k] for k in sorted(weights)}, buf)
            raw = buf.getvalue()
        self._raw = raw
        self.fingerprint = hashlib.sha256(raw).hexdigest()
        self.weights = weights
        self.config = dict(config or {})
        self.config.setdefault("format", "saepress-model")
        self.config["K"] = int(weights["bases"].shape[0])
        self.arrays = _arrays(weights)
        t = self.arrays.tables
        self.models = blockcoder.Models(t.ac, t.dc, t.esc, t.eob, self.arrays.K)

    # ---- persistence ----
    @classmethod
    def pretrained(cls) -> "Codec":
        return cls.load(Path(__file__).parent / "data" / "default")

    @classmethod
    def load(cls, path_or_uri) -> "Codec":
        s = str(path_or_uri)
        if s.startswith("models:/") or s.startswith("runs:/"):
            import mlflow.artifacts  # lazy: only registry URIs need MLflow
            path = Path(mlflow.artifacts.download_artifacts(artifact_uri=s))
        else:
            path = Path(s)
        if not (path / WEIGHTS).exists():
            found = sorted(path.glob(f"*/{WEIGHTS}"))
            if len(found) != 1:
                raise CodecError(f"no {WEIGHTS} in {s}")
            path = found[0].parent
        raw = (path / WEIGHTS).read_bytes()
        try:
            weights = torch.load(io.BytesIO(raw), weights_only=True)
            config = json.loads((path / CONFIG).read_text()) if (path / CONFIG).exists() else {}
            return cls({k: v for k, v in weights.items()}, config, raw)
        except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError ... on damaged files
            raise CodecError(f"{path} does not hold a saepress model ({type(exc).__name__}: "
                             f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no detail'})") from None

    def save(self, directory) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / WEIGHTS).write_bytes(self._raw)
        (d / CONFIG).write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n")

    # ---- coding ----
    def encode(self, image, quality: int | None = None, *, target_bpp: float | None = None,
               target_psnr: float | None = None, settings: EncoderSettings = DEFAULT_SETTINGS) -> bytes:
        given = [v is not None for v in (quality, target_bpp, target_psnr)]
        if sum(given) > 1:
            raise ValueError("give exactly one of quality, target_bpp, target_psnr")
        prep = imageio.prepare(image)
        if target_bpp is not None or target_psnr is not None:
            return self._search(prep, target_bpp, target_psnr, settings)
        return self._encode(prep, _quality(quality), settings)

    def analyse(self, image, quality: int = DEFAULT_QUALITY,
                settings: EncoderSettings = DEFAULT_SETTINGS) -> Iterator[list[planes.PlaneLevels]]:
        """The encoder's decisions before coding: per tile (raster order) the levels of each
        plane, exactly what encode() codes. Table fitting counts them (pretrained.py)."""
        return encoder.analyse(self.arrays, imageio.prepare(image).pixels, _quality(quality), settings)

    def _search(self, prep, target_bpp, target_psnr, settings) -> bytes:
        """Binary search on quality (rate is monotone in quality)."""
        from .evaluate import psnr
        h, w, nc = prep.pixels.shape
        lo, hi, best = 0, 100, None
        while lo <= hi:
            mid = (lo + hi) // 2
            data = self._encode(prep, mid, settings)
            if target_bpp is not None:
                ok = len(data) * 8 / (w * h) <= target_bpp
            else:
                dec = np.asarray(self.decode(data)).reshape(h, w, -1)[:, :, :nc]
                ok = psnr(prep.pixels, dec) >= target_psnr
            if ok:
                best = data
            # bpp: largest quality that fits; psnr: smallest quality that reaches the target
            if ok == (target_bpp is not None):
                lo = mid + 1
            else:
                hi = mid - 1
        if best is None:
            best = self._encode(prep, 0 if target_bpp is not None else 100, settings)
        return best

    def _encode(self, prep: imageio.Prepared, quality: int, settings: EncoderSettings) -> bytes:
        h, w, nc = prep.pixels.shape
        step16 = encoder.quality_to_step16(quality)
        sub = settings.subsampled(nc, step16)
        header = bitstream.Header(bitstream.FORMAT_VERSION, self.fingerprint, w, h, prep.mode,
                                  prep.source_mode, prep.flags | (bitstream.FLAG_SUBSAMPLED if sub else 0),
                                  quality, step16, settings.chroma_ratio64,
                                  settings.dc_ratio64, settings.bias256, settings.tile)
        tiles = encoder.analyse(self.arrays, prep.pixels, quality, settings)
        payload = formats.WRITER.encode_payload(self, header, tiles, settings)
        alpha = bitstream.encode_alpha(prep.alpha) if prep.alpha is not None else b""
        return bitstream.write(header, prep.exif, prep.icc, alpha, payload)

    def decode(self, data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
        """max_pixels: refuse (ImageTooLargeError) a stream whose header declares more pixels,
        before anything is allocated."""
        data = bytes(data)
        hd = bitstream.read_header(data)
        if hd.width * hd.height > max_pixels:
            raise ImageTooLargeError(
                f"stream declares {hd.width}x{hd.height} = {hd.width * hd.height} pixels, more than the "
                f"decode limit of {max_pixels}; if you trust this stream, raise the limit (--max-pixels, "
                f"decode(max_pixels=...))")
        st = bitstream.parse(data)
        hd = st.header
        if hd.fingerprint != self.fingerprint:
            raise ModelMismatchError(f"stream model {hd.fingerprint[:12]} != codec model {self.fingerprint[:12]}")
        try:
            return self._decode(st)
        except CodecError:
            raise
        except Exception as e:  # constriction raises AssertionError/ValueError on bad words
            raise CorruptStreamError(f"undecodable payload: {type(e).__name__}: {e}") from None

    def _decode(self, st: bitstream.Stream) -> Image.Image:
        hd = st.header
        w, h = hd.width, hd.height
        if hd.subsampled and hd.mode in ("L", "LA"):
            raise CorruptStreamError("subsampling flag on a grey image")
        if bool(st.alpha) != (hd.mode in ("LA", "RGBA")):
            raise CorruptStreamError("alpha section on a mode without alpha" if st.alpha else "missing alpha section")
        img = Image.new(hd.mode, (w, h))
        colour = "L" if hd.mode in ("L", "LA") else "RGB"
        for y0, x0, px in formats.decoder(hd.format_version).decode_tiles(self, hd, st.payload):
            img.paste(Image.fromarray(px[:, :, 0] if colour == "L" else px, colour), (x0, y0))
        if st.alpha:
            img.putalpha(Image.fromarray(bitstream.decode_alpha(st.alpha, h, w), "L"))
        if st.exif:
            img.info["exif"] = st.exif
        if st.icc:
            img.info["icc_profile"] = st.icc
        img.info["saepress"] = {
            "source_mode": hd.source_mode,
            "reduced_16bit": bool(hd.flags & bitstream.FLAG_REDUCED16),
            "cmyk_to_rgb": bool(hd.flags & bitstream.FLAG_CMYK),
            "orientation_applied": bool(hd.flags & bitstream.FLAG_ORIENTED),
            "chroma_subsampled": hd.subsampled,
            "quality": hd.quality,
        }
        return img


def _quality(quality: int | None) -> int:
    q = DEFAULT_QUALITY if quality is None else int(quality)
    if not 0 <= q <= 100:
        raise ValueError("quality must be in 0..100")
    return q


def _arrays(w: dict) -> planes.ModelArrays:
    bases = w["bases"].double().numpy()
    tables = Tables(w["ac_table"].numpy().astype(np.int64), w["dc_table"].numpy().astype(np.int64),
                    w["esc_table"].numpy().astype(np.int64),
                    w["eob_table"].numpy().astype(np.int64) if "eob_table" in w else None)
    basis_t = np.rint(bases * (1 << postfilter.BASIS_SHIFT)).astype(np.int64).transpose(0, 2, 1)
    return planes.ModelArrays(bases=bases.astype(np.float32),
                              basis_t=np.ascontiguousarray(basis_t),
                              sigma16=w["sigma16"].numpy().astype(np.int64), tables=tables,
                              bits=encoder.rate_proxy(tables.ac))


def default_tables() -> dict:
    """Parametric (Laplace) tables for a model whose tables have not been fitted to data."""
    ac = np.zeros((2, planes.N_AC_CTX, ALPHABET), np.int64)
    for pb in range(NPRIOR):
        for a in range(N_RECENT):
            for nbr in range(N_NEIGHBOUR):
                for e in range(N_TO_EOB):
                    scale = 2 ** ((pb - 8) / 2) * 2 ** ((a - 1) / 2) * (1.0 + 0.3 * nbr) * (1 + 0.3 * e)
                    ac[:, pb * N_ACTIVITY + (a * N_NEIGHBOUR + nbr) * N_TO_EOB + e] = laplace_counts(scale)
    dc = np.zeros((2, planes.N_DC_CTX, ALPHABET), np.int64)
    for st in range(planes.N_DC_STAGE):
        for g in range(N_SPREAD):
            row = (st * N_SPREAD + g) * N_EOB_BUCKET
            dc[:, row:row + N_EOB_BUCKET] = laplace_counts(1.0 + 2 ** g / 2 + 4 * (st == 0))
    esc = np.maximum(1, (2.0 ** (16 - np.arange(ESC_BITS))).astype(np.int64))[None].repeat(2, 0)
    return {"ac_table": torch.from_numpy(ac.astype(np.int32)), "dc_table": torch.from_numpy(dc.astype(np.int32)),
            "esc_table": torch.from_numpy(esc.astype(np.int32))}

"""Codec: a trained model plus the bitstream (container: bitstream.py; payload v2: blockcoder.py)."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import bitstream, blockcoder, entropy, imageio, planes, postfilter
from .errors import CodecError, CorruptStreamError, ModelMismatchError

WEIGHTS, CONFIG = "weights.pt", "config.json"
TILE = 1024
# Encoder settings (not in the stream: the decoder needs none of them).
ROUNDING = 0.5      # candidate level q = floor(|c|/step + ROUNDING); RDO may lower it by one
LAMBDA = 0.07       # rate-distortion multiplier in units of step**2 per bit (member and levels)
CHROMA_RATIO64 = 40  # chroma step = 0.625 luma step
DC_RATIO64 = 6       # block-mean step = 0.75 step / 8 (DC coefficient slightly finer than AC)
BIAS256 = 0
SUBSAMPLE_BELOW = 56  # 4:2:0 chroma pays below this quality; above, it caps PSNR


def quality_to_step16(quality: int) -> int:
    """Monotone: quality 100 -> step 0.5, 50 -> ~9.9, 0 -> ~194 sample units."""
    return int(round(16 * 0.5 * 2 ** ((100 - quality) / 11.6)))


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
        self.models = blockcoder.Models(t.ac, t.dc, t.esc, self.arrays.K)

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
        weights = torch.load(io.BytesIO(raw), weights_only=True)
        config = json.loads((path / CONFIG).read_text()) if (path / CONFIG).exists() else {}
        return cls({k: v for k, v in weights.items()}, config, raw)

    def save(self, directory) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / WEIGHTS).write_bytes(self._raw)
        (d / CONFIG).write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n")

    # ---- coding ----
    def encode(self, image, quality: int | None = None, *, target_bpp: float | None = None,
               target_psnr: float | None = None, **settings) -> bytes:
        given = [v is not None for v in (quality, target_bpp, target_psnr)]
        if sum(given) > 1:
            raise ValueError("give exactly one of quality, target_bpp, target_psnr")
        prep = imageio.prepare(image)
        if target_bpp is not None or target_psnr is not None:
            return self._search(prep, target_bpp, target_psnr, settings)
        q = 50 if quality is None else int(quality)
        if not 0 <= q <= 100:
            raise ValueError("quality must be in 0..100")
        return self._encode(prep, q, **settings)

    def _search(self, prep, target_bpp, target_psnr, settings) -> bytes:
        """Binary search on quality (rate is monotone in quality)."""
        from .evaluate import psnr
        h, w, nc = prep.pixels.shape
        lo, hi, best = 0, 100, None
        while lo <= hi:
            mid = (lo + hi) // 2
            data = self._encode(prep, mid, **settings)
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
            best = self._encode(prep, 0 if target_bpp is not None else 100, **settings)
        return best

    def _encode(self, prep: imageio.Prepared, quality: int, subsample: bool | None = None,
                rounding: float = ROUNDING, lam: float = LAMBDA, members=None,
                chroma_ratio64: int = CHROMA_RATIO64, dc_ratio64: int = DC_RATIO64,
                bias256: int = BIAS256, rdoq: bool = True, counter=None) -> bytes | None:
        """counter: a blockcoder.SymbolCounter that receives the symbols instead (table fitting)."""
        h, w, nc = prep.pixels.shape
        step16 = min(65535, max(1, quality_to_step16(quality)))
        sub = nc == 3 and (quality < SUBSAMPLE_BELOW if subsample is None else subsample)
        flags = prep.flags | (bitstream.FLAG_SUBSAMPLED if sub else 0)
        tiles = []
        for y0 in range(0, h, TILE):
            for x0 in range(0, w, TILE):
                px = prep.pixels[y0:y0 + TILE, x0:x0 + TILE]
                enc = counter or blockcoder.TileEncoder(self.models)
                for pc, plane, s16 in self._planes(px, sub, step16, chroma_ratio64):
                    mem, Q, dcq = planes.analyse_plane(plane, self.arrays, pc, s16, dc_ratio64,
                                                       bias256, rounding, lam, members, rdoq)
                    hb, wb = plane.shape[0] // 8, plane.shape[1] // 8
                    enc.add(pc, hb, wb, planes.prior_buckets(self.arrays.sigma16, s16), mem, Q, dcq,
                            planes.dc_origin(s16, dc_ratio64))
                if counter is None:
                    tiles.append(enc.finish())
        if counter is not None:
            return None
        header = bitstream.Header(bitstream.FORMAT_VERSION, self.fingerprint, w, h, prep.mode,
                                  prep.source_mode, flags, quality, step16, chroma_ratio64,
                                  dc_ratio64, bias256, TILE)
        alpha = bitstream.encode_alpha(prep.alpha) if prep.alpha is not None else b""
        return bitstream.write(header, prep.exif, prep.icc, alpha, bitstream.pack_tiles(tiles))

    @staticmethod
    def _planes(px: np.ndarray, sub: bool, step16: int, cr64: int):
        """Yield (plane class, padded plane, step16) for a tile."""
        m = 16 if sub else 8
        h, w = px.shape[:2]
        px = np.pad(px, ((0, -h % m), (0, -w % m), (0, 0)), mode="edge")
        if px.shape[2] == 1:
            yield 0, px[:, :, 0].astype(np.float64), step16
            return
        ycc = imageio.rgb_to_ycbcr(px)
        yield 0, ycc[:, :, 0], step16
        cstep = max(1, (step16 * cr64 + 32) // 64)
        for c in (1, 2):
            p = imageio.downsample2(ycc[:, :, c]) if sub else ycc[:, :, c]
            yield 1, p, cstep

    def decode(self, data: bytes) -> Image.Image:
        data = bytes(data)
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
        w, h, T = hd.width, hd.height, hd.tile
        nc = 1 if hd.mode in ("L", "LA") else 3
        ntiles = -(-w // T) * -(-h // T)
        v1 = hd.format_version == 1
        tiles = bitstream.unpack_tiles(st.payload, ntiles, word_aligned=v1)
        out = np.empty((h, w, nc), np.uint8)
        sub = hd.subsampled
        if sub and nc == 1:
            raise CorruptStreamError("subsampling flag on a grey image")
        m = 16 if sub else 8
        cstep = max(1, (hd.step16 * hd.chroma_ratio64 + 32) // 64)
        it = iter(tiles)
        for y0 in range(0, h, T):
            for x0 in range(0, w, T):
                th, tw = min(T, h - y0), min(T, w - x0)
                H, W = th + (-th % m), tw + (-tw % m)
                data = next(it)
                dec = entropy.Decoder(self.arrays.tables, data) if v1 else blockcoder.TileDecoder(self.models, data)
                rec = []
                for c in range(nc):
                    pc, s16, f = (0, hd.step16, 1) if c == 0 else (1, cstep, 2 if sub else 1)
                    hb, wb = H // f // 8, W // f // 8
                    if v1:
                        mem, Q, dcq = planes.decode_v1(dec, self.arrays, pc, s16, hd.dc_ratio64, hb, wb)
                    else:
                        mem, Q, dcq = dec.plane(pc, hb, wb, planes.prior_buckets(self.arrays.sigma16, s16),
                                                planes.dc_origin(s16, hd.dc_ratio64))
                    p = postfilter.inverse_transform(self.arrays.basis_t, s16, hd.dc_ratio64, hd.bias256,
                                                     hb, wb, mem, Q, dcq)
                    if p is None:
                        raise CorruptStreamError("DC value out of range")
                    postfilter.deblock(p, s16)
                    rec.append(p)
                view = out[y0:y0 + th, x0:x0 + tw]
                if v1:
                    view[...] = _v1_pixels(rec, sub, th, tw)
                elif nc == 1:
                    postfilter.to_grey(rec[0], view)
                else:
                    postfilter.to_rgb(rec[0], rec[1], rec[2], sub, view)
        if st.alpha:
            if hd.mode not in ("LA", "RGBA"):
                raise CorruptStreamError("alpha section on a mode without alpha")
            out = np.concatenate([out, bitstream.decode_alpha(st.alpha, h, w)[:, :, None]], axis=2)
        elif hd.mode in ("LA", "RGBA"):
            raise CorruptStreamError("missing alpha section")
        img = Image.fromarray(out[:, :, 0] if hd.mode == "L" else out, hd.mode)
        if st.exif:
            img.info["exif"] = st.exif
        if st.icc:
            img.info["icc_profile"] = st.icc
        img.info["saepress"] = {
            "source_mode": hd.source_mode,
            "reduced_16bit": bool(hd.flags & bitstream.FLAG_REDUCED16),
            "cmyk_to_rgb": bool(hd.flags & bitstream.FLAG_CMYK),
            "orientation_applied": bool(hd.flags & bitstream.FLAG_ORIENTED),
            "chroma_subsampled": sub,
            "quality": hd.quality,
        }
        return img


def _v1_pixels(rec: list, sub: bool, th: int, tw: int) -> np.ndarray:
    """Format v1 colour: float planes, float32 YCbCr -> RGB (imageio)."""
    rec = [r / 4096.0 for r in rec]
    if len(rec) == 1:
        return np.clip(np.floor(rec[0][:th, :tw] + 0.5), 0, 255)[:, :, None]
    if sub:
        rec[1:] = [imageio.upsample2(r) for r in rec[1:]]
    return imageio.ycbcr_to_rgb(*(r[:th, :tw] for r in rec))


def _arrays(w: dict) -> planes.ModelArrays:
    bases = w["bases"].double().numpy()
    tables = entropy.Tables(w["ac_table"].numpy().astype(np.int64), w["dc_table"].numpy().astype(np.int64),
                            w["esc_table"].numpy().astype(np.int64))
    basis_t = np.rint(bases * (1 << postfilter.BASIS_SHIFT)).astype(np.int64).transpose(0, 2, 1)
    return planes.ModelArrays(bases=bases.astype(np.float32),
                              basis_t=np.ascontiguousarray(basis_t),
                              sigma16=w["sigma16"].numpy().astype(np.int64), tables=tables,
                              bits=_rate_proxy(tables.ac))


def _rate_proxy(ac: np.ndarray) -> np.ndarray:
    """Bits of a value of magnitude |q| (sign included) per (plane class, prior bucket),
    averaging the tables over the activity contexts the encoder cannot know in advance."""
    t = ac.reshape(2, planes.NPRIOR, 45, entropy.ALPHABET).astype(np.float64)
    p = (t / t.sum(-1, keepdims=True)).mean(2)
    return -np.log2(p[..., entropy.ESC:])


def default_tables() -> dict:
    """Parametric (Laplace) tables for a model whose tables have not been fitted to data."""
    ac = np.zeros((2, planes.N_AC_CTX, entropy.ALPHABET), np.int64)
    for pb in range(planes.NPRIOR):
        for a in range(5):
            for nbr in range(3):
                for e in range(3):
                    scale = 2 ** ((pb - 8) / 2) * 2 ** ((a - 1) / 2) * (1.0 + 0.3 * nbr) * (1 + 0.3 * e)
                    ac[:, pb * 45 + (a * 3 + nbr) * 3 + e] = entropy.laplace_counts(scale)
    dc = np.zeros((2, planes.N_DC_CTX, entropy.ALPHABET), np.int64)
    for st in range(3):
        for g in range(8):
            dc[:, (st * 8 + g) * 3:(st * 8 + g) * 3 + 3] = entropy.laplace_counts(1.0 + 2 ** g / 2 + 4 * (st == 0))
    esc = np.maximum(1, (2.0 ** (16 - np.arange(entropy.ESC_BITS))).astype(np.int64))[None].repeat(2, 0)
    return {"ac_table": torch.from_numpy(ac.astype(np.int32)), "dc_table": torch.from_numpy(dc.astype(np.int32)),
            "esc_table": torch.from_numpy(esc.astype(np.int32))}

"""Training of the mixture SAE: no tracking inside (callers log the returned metrics)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .model import B, MixtureSAE, complement
from .patches import patches_to_blocks


@dataclass
class TrainConfig:
    seed: int = 0
    steps: int = 200              # ~0.5-2 s per step on one loaded CPU core: minutes, not tens
    batch_size: int = 2048
    lr: float = 1e-3
    l1_lambda: float = 6.0        # L1 weight, in sample units (0..255 scale); ~ a mid-rate step
    K: int = 16                   # mixture members (member 0 starts as the DCT)
    min_coherence: float = 0.35   # init: blocks less oriented than this go to the DCT member
    var_momentum: float = 0.99    # EMA of coefficient variances (for the entropy priors)


def auto_device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class Trainer:
    def __init__(self, config: TrainConfig, device: str | None = None):
        self.config = config
        self.device = device or auto_device()
        torch.manual_seed(config.seed)
        self.model = MixtureSAE(config.K, config.l1_lambda).to(self.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.var = torch.ones(config.K, B * B - 1, dtype=torch.float64, device=self.device)
        self.step_count = 0

    def initialize(self, patches: np.ndarray) -> None:
        """PCA basis per edge-orientation class (member 0: DCT). Deterministic."""
        x = patches_to_blocks(patches)
        x = x - x.mean(1, keepdims=True)
        C0 = complement().numpy()
        y = x @ C0
        K = self.config.K
        cls = orientation_class(x, K - 1, self.config.min_coherence)
        Q = np.zeros((K, B * B - 1, B * B - 1))
        Q[0] = np.eye(B * B - 1)
        for k in range(1, K):
            sel = y[cls == k]
            if len(sel) < 4 * B * B:
                sel = y
            Q[k] = _pca(sel)
        self.model.set_rotations(Q)
        with torch.no_grad():
            z = torch.einsum("nd,kdj->knj", torch.from_numpy(x).to(self.device), self.model.ac_atoms())
            member = torch.from_numpy(np.minimum(cls, K - 1)).to(self.device)
            for k in range(K):
                zk = z[k][member == k]
                self.var[k] = (zk ** 2).mean(0) if len(zk) else (z[k] ** 2).mean(0)

    def initialize_from(self, codec) -> None:
        """Warm start: every member's basis and coefficient variances from a trained codec (same K).

        A codec's bases are [1/8, C0 @ Q_k] with columns sorted by variance; C0 has orthonormal columns, so
        Q_k = C0^T @ bases_k[:, 1:] recovers an orthogonal rotation (in sorted order, which to_codec re-sorts).
        """
        bases = codec.weights["bases"].numpy().astype(np.float64)
        if bases.shape[0] != self.config.K:
            raise ValueError(f"warm start needs a codec with K={self.config.K} members, this one has "
                             f"{bases.shape[0]}; set K={bases.shape[0]} or start cold")
        C0 = complement().numpy()
        Q = np.einsum("dj,kdi->kji", C0, bases[:, :, 1:])
        # float32 storage leaves ~1e-7 off orthogonality; the parametrisation needs an exact orthogonal matrix.
        u, _, vt = np.linalg.svd(Q)
        self.model.set_rotations(u @ vt)
        sigma = codec.weights["sigma16"].numpy().astype(np.float64) / 16
        self.var = torch.from_numpy(np.maximum(sigma, 1 / 16) ** 2).to(self.device)

    def step(self, batch: np.ndarray) -> dict:
        x = torch.from_numpy(patches_to_blocks(batch)).to(self.device)
        out = self.model(x)
        self.opt.zero_grad()
        out["loss"].backward()
        self.opt.step()
        self.step_count += 1
        with torch.no_grad():
            z = torch.einsum("nd,ndj->nj", x - x.mean(1, keepdim=True), self.model.ac_atoms()[out["member"]])
            m = self.config.var_momentum
            for k in out["member"].unique().tolist():
                self.var[k] = m * self.var[k] + (1 - m) * (z[out["member"] == k] ** 2).mean(0)
        return {"loss": out["loss"].item(), "mse": out["mse"].item(), "l1": out["l1"].item(),
                "active": float((out["code"] != 0).sum(1).double().mean())}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "var": self.var,
                "step": self.step_count, "config": asdict(self.config)}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.var = state["var"].to(self.device)
        self.step_count = int(state["step"])

    def to_codec(self, tables: dict | None = None):
        """Codec with bases sorted by coefficient variance. Entropy tables: given, else the
        shipped default model's (their contexts are normalised by the priors, so they transfer),
        else parametric."""
        from .codec import Codec, default_tables
        with torch.no_grad():
            bases = self.model.bases().cpu().numpy()
            var = self.var.cpu().numpy()
        order = np.argsort(-var, axis=1, kind="stable")
        for k in range(self.config.K):
            bases[k, :, 1:] = bases[k, :, 1:][:, order[k]]
            var[k] = var[k][order[k]]
        if tables is None:
            tables = _shipped_tables() or default_tables()
        weights = {"bases": torch.from_numpy(bases.astype(np.float32)),
                   "sigma16": torch.from_numpy(np.rint(16 * np.sqrt(var)).astype(np.int32)), **tables}
        return Codec(weights, {"train": asdict(self.config), "steps": self.step_count})


def train(config: TrainConfig, patches: np.ndarray, device: str | None = None,
          callback: Callable[[int, dict], None] | None = None, tables: dict | None = None):
    """Seeded end-to-end training on an in-memory patch array; callback(step, metrics)."""
    rng = np.random.default_rng(config.seed)
    trainer = Trainer(config, device)
    trainer.initialize(patches[rng.choice(len(patches), min(len(patches), 200_000), replace=False)])
    for _ in range(config.steps):
        metrics = trainer.step(patches[rng.integers(0, len(patches), config.batch_size)])
        if callback is not None:
            callback(trainer.step_count, metrics)
    return trainer.to_codec(tables)


def orientation_class(x: np.ndarray, n_classes: int, min_coherence: float) -> np.ndarray:
    """0 for weakly oriented blocks, else 1 + orientation bin (structure tensor angle)."""
    b = x.reshape(-1, B, B)
    gx = b[:, :-1, 1:] - b[:, :-1, :-1]
    gy = b[:, 1:, :-1] - b[:, :-1, :-1]
    jxx, jyy, jxy = (gx * gx).sum((1, 2)), (gy * gy).sum((1, 2)), (gx * gy).sum((1, 2))
    coh = np.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2) / (jxx + jyy + 1e-9)
    angle = 0.5 * np.arctan2(2 * jxy, jxx - jyy)  # -pi/2..pi/2
    bins = np.floor((angle + np.pi / 2) / np.pi * n_classes).astype(np.int64) % max(n_classes, 1)
    return np.where((coh >= min_coherence) & (jxx + jyy > 1.0) & (n_classes > 0), 1 + bins, 0)


def _pca(y: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(y.T @ y)
    v = v[:, np.argsort(-w, kind="stable")]
    return v * np.where(v[np.abs(v).argmax(0), np.arange(v.shape[1])] < 0, -1.0, 1.0)


def _shipped_tables() -> dict | None:
    path = Path(__file__).parent / "data" / "default" / "weights.pt"
    if not path.exists():
        return None
    w = torch.load(path, weights_only=True)
    return {k: w[k] for k in ("ac_table", "dc_table", "esc_table", "eob_table") if k in w}


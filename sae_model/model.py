"""The sparse autoencoder: a mixture of K tied orthonormal autoencoders on 8x8 blocks.

Member k has basis B_k = [1/8, C0 @ Q_k] (64x64, orthonormal): the constant atom carries the
block mean (coded separately, with prediction); C0 spans its orthogonal complement (the DCT AC
atoms) and Q_k (63x63) is kept orthogonal by torch's orthogonal parametrisation. Encoder
E_k(x) = shrink(B_k^T x), decoder D_k(z) = B_k z (unit-norm atoms). Each block uses the member
with the lowest cost of the seed objective ||x - D(E(x))||^2 + lambda ||E(x)||_1.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrizations

B = 8


def dct_basis() -> np.ndarray:
    """Orthonormal 2-D DCT-II basis (64x64), columns in zigzag-like order, column 0 constant."""
    n = np.arange(B)
    c = np.sqrt(2.0 / B) * np.cos(np.pi * (2 * n[None, :] + 1) * n[:, None] / (2 * B))
    c[0] /= np.sqrt(2.0)
    atoms = np.einsum("ux,vy->uvxy", c, c).reshape(B * B, B * B).T  # column (u,v)
    order = sorted(range(B * B), key=lambda i: (i // B + i % B, i // B if (i // B + i % B) % 2 else i % B))
    return atoms[:, order]


def complement() -> torch.Tensor:
    return torch.from_numpy(dct_basis()[:, 1:]).double()


class MixtureSAE(nn.Module):
    def __init__(self, K: int, l1: float):
        super().__init__()
        self.K, self.l1 = K, l1
        self.members = nn.ModuleList()
        for _ in range(K):
            lin = nn.Linear(B * B - 1, B * B - 1, bias=False, dtype=torch.float64)
            self.members.append(parametrizations.orthogonal(lin))
        self.register_buffer("C0", complement())

    def set_rotations(self, Q: np.ndarray) -> None:
        """Q: (K, 63, 63) orthogonal matrices (the AC atoms in complement coordinates)."""
        with torch.no_grad():
            for lin, q in zip(self.members, Q):
                lin.weight = torch.from_numpy(np.ascontiguousarray(q)).double()

    def ac_atoms(self) -> torch.Tensor:
        """(K, 64, 63) AC atoms of every member."""
        return torch.stack([self.C0 @ lin.weight for lin in self.members])

    def bases(self) -> torch.Tensor:
        dc = torch.full((self.K, B * B, 1), 1.0 / B, dtype=torch.float64, device=self.C0.device)
        return torch.cat([dc, self.ac_atoms()], dim=2)

    def forward(self, x: torch.Tensor) -> dict:
        """x: (n, 64) blocks. Returns reconstruction, codes, member and the objective terms."""
        x = x.to(torch.float64)
        mean = x.mean(1, keepdim=True)
        A = self.ac_atoms()
        z = torch.einsum("nd,kdj->knj", x - mean, A)               # (K, n, 63)
        code = torch.sign(z) * torch.relu(z.abs() - self.l1)         # E(x): soft threshold
        cost = ((z - code) ** 2).sum(2) + self.l1 * code.abs().sum(2)  # per member and block
        member = cost.detach().argmin(0)
        pick = torch.arange(x.shape[0], device=x.device)
        code = code[member, pick]
        recon = mean + torch.einsum("nj,ndj->nd", code, A[member])
        mse = ((x - recon) ** 2).mean()
        l1 = code.abs().sum(1).mean()
        return {"recon": recon, "code": code, "member": member, "mse": mse, "l1": l1,
                "loss": cost[member, pick].mean() / (B * B)}

"""The DSE pair head and its algebra for one query against many candidates.

:class:`PairHead` scores a pair from ``[u, v, u*v, |u-v|]`` through ``dense`` (hidden units), ReLU and ``out``.
With ``dense.weight = [W1 W2 W3 W4]`` and ``|u-v| = u + v - 2 min(u, v)`` the pre-activation splits exactly into

    z = (W1 + W4) u                   per query, once
      + (W2 + W4) v + b               per candidate only: precomputed once per candidate ("cand_proj")
      + (W3 * u) v                    one GEMM per query over the candidate block
      - 2 W4 min(u, v)                one elementwise min and one GEMM per query over the block

so one query against N candidates costs two N x d x hidden GEMMs instead of the naive head's four, with no
approximation (the tests compare :class:`HeadScorer` against :meth:`DSEModel.head_logits`).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError

PRECISIONS = ("fp32", "bf16")


class PairHead(nn.Module):
    """``[u, v, u*v, |u-v|]`` -> Linear(hidden) -> ReLU -> Linear(k), as in the official DSE code."""

    def __init__(self, embedding_dim: int, hidden_dim: int = 512, num_outputs: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.dense = nn.Linear(4 * embedding_dim, hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim, num_outputs)

    @staticmethod
    def pair_features(u: Tensor, v: Tensor) -> Tensor:
        return torch.cat([u, v, u * v, (u - v).abs()], dim=-1)

    def forward(self, u: Tensor, v: Tensor) -> Tensor:
        hidden = torch.relu(self.dense(self.pair_features(u, v)))
        return self.out(self.dropout(hidden))


class HeadScorer:
    """The pair head rewritten for one-query-many-candidates scoring (see the module docstring).

    With ``relu(u - v) = u - min(u, v)`` the nonlinear term becomes ``2 W4 u - 2 W4 min(u, v)``: the first
    part joins the per-query vector and ``min`` is a single elementwise pass over the candidate block.
    """

    def __init__(self, head: PairHead) -> None:
        weight = head.dense.weight.detach().float().cpu()
        d = head.embedding_dim
        w1, w2, w3, w4 = (weight[:, i * d:(i + 1) * d] for i in range(4))
        self.dim = d
        self.hidden = weight.shape[0]
        self.q_lin_t = (w1 + w4).t().contiguous()  # d x h: (W1 - W4) u + 2 W4 u
        self.c_lin_t = (w2 + w4).t().contiguous()  # d x h
        self.bias = head.dense.bias.detach().float().cpu().clone()
        self.w3 = w3.contiguous()  # h x d
        self.w4n_t = (-2.0 * w4).t().contiguous()  # d x h, multiplies min(u, v)
        self.out_w_t = head.out.weight.detach().float().cpu().t().contiguous()  # h x k
        self.out_b = head.out.bias.detach().float().cpu().clone()
        self.outputs = self.out_w_t.shape[1]
        self.w4n_t_bf16 = self.w4n_t.to(torch.bfloat16)
        self._moved: dict[torch.device, HeadScorer] = {}

    @property
    def device(self) -> torch.device:
        return self.q_lin_t.device

    def to(self, device: str | torch.device | None) -> HeadScorer:
        """This scorer with every weight on ``device`` (itself for the CPU or None), made once per device.

        The scan then runs where the weights are: queries and candidate blocks are moved to them.
        """
        device = torch.device(device or "cpu")
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device == self.device:
            return self
        if device not in self._moved:
            moved = copy.copy(self)
            for name, value in vars(self).items():
                if isinstance(value, Tensor):
                    setattr(moved, name, value.to(device))
            moved._moved = {}
            self._moved[device] = moved
        return self._moved[device]

    # -- precomputation ----------------------------------------------------------------------------
    @torch.inference_mode()
    def candidate_proj(self, v: np.ndarray | Tensor) -> np.ndarray:
        """The candidate-only part of the first layer, ``(W2 + W4) v + b`` (stored per candidate)."""
        vt = torch.as_tensor(np.asarray(v, dtype=np.float32)) if not isinstance(v, Tensor) else v.float()
        return torch.addmm(self.bias, vt, self.c_lin_t).numpy()

    # -- scoring -------------------------------------------------------------------------------------
    @torch.inference_mode()
    def block_logits(self, u: Tensor, v: Tensor, cand_proj: Tensor, precision: str = "fp32") -> Tensor:
        """Head logits ``[Q, B, k]`` of queries ``u [Q, d]`` against a candidate block ``v [B, d]``.

        ``precision="bf16"`` runs both GEMMs (and the elementwise min) in bfloat16 (AMX/AVX-512 on recent
        CPUs): a fast approximate screen, always followed by an fp32 rescoring of its shortlist in
        :func:`dsembed.retrieval.rank`.
        """
        u = u.float()
        out = torch.empty(u.shape[0], v.shape[0], self.outputs, device=u.device)
        a = u @ self.q_lin_t
        if precision == "fp32":
            self._block_fp32(u, a, v.float(), cand_proj.float(), out)
        elif precision == "bf16":
            self._block_bf16(u, a, v, cand_proj, out)
        else:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        return out

    def _block_fp32(self, u: Tensor, a: Tensor, vf: Tensor, proj: Tensor, out: Tensor) -> None:
        mins = torch.empty_like(vf)
        for q in range(u.shape[0]):
            z = torch.addmm(proj, vf, (self.w3 * u[q]).t())
            z += a[q]
            torch.minimum(vf, u[q], out=mins)
            z.addmm_(mins, self.w4n_t)
            z.relu_()
            torch.addmm(self.out_b, z, self.out_w_t, out=out[q])

    def _block_bf16(self, u: Tensor, a: Tensor, v: Tensor, cand_proj: Tensor, out: Tensor) -> None:
        vb = v if v.dtype == torch.bfloat16 else v.to(torch.bfloat16)
        proj_b = cand_proj if cand_proj.dtype == torch.bfloat16 else cand_proj.to(torch.bfloat16)
        ub = u.to(torch.bfloat16)
        ab = a.to(torch.bfloat16)
        mins = torch.empty_like(vb)
        for q in range(u.shape[0]):
            z = torch.addmm(proj_b, vb, (self.w3 * u[q]).t().to(torch.bfloat16))
            z += ab[q]
            torch.minimum(vb, ub[q], out=mins)
            z.addmm_(mins, self.w4n_t_bf16)
            z.relu_()
            out[q] = (z @ self.out_w_t.to(torch.bfloat16)).float() + self.out_b

    @torch.inference_mode()
    def pair_logits(self, u: Tensor, v: Tensor, cand_proj: Tensor) -> Tensor:
        """Logits ``[n, k]`` of aligned rows (``u[i]`` with ``v[i]``), e.g. for a prefiltered candidate graph."""
        u, v = u.float(), v.float()
        z = cand_proj + u @ self.q_lin_t
        z += (u * v) @ self.w3.t()
        z.addmm_(torch.minimum(u, v), self.w4n_t)
        z.relu_()
        return torch.addmm(self.out_b, z, self.out_w_t)

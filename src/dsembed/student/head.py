"""The DSE pair head: a small MLP over ``[u, v, u*v, |u-v|]`` of the two sentence embeddings."""

from __future__ import annotations

import torch
from torch import Tensor, nn


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

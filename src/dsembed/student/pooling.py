"""Sentence-transformers pooling module: masked mean over the concatenated top-k layers.

This file is self-contained on purpose (it imports only torch and sentence_transformers): it is
copied next to every saved student as ``dsembed_pooling.py`` so that plain
``SentenceTransformer(path, trust_remote_code=True)`` loads the student without dsembed installed.
"""

from __future__ import annotations

from typing import Any

import torch
from sentence_transformers.base.modules.module import Module
from torch import Tensor


class LayerConcatMeanPooling(Module):
    """DSE's default pooling: mean over tokens of the last ``top_k`` hidden layers, concatenated.

    Needs the preceding Transformer module to emit ``all_layer_embeddings``
    (``output_hidden_states=True`` in the encoder config).
    """

    config_keys: list[str] = ["embedding_dimension", "top_k"]

    def __init__(self, embedding_dimension: int, top_k: int = 4) -> None:
        super().__init__()
        self.embedding_dimension = embedding_dimension
        self.top_k = top_k

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        layers = features.get("all_layer_embeddings")
        if layers is None:
            raise ValueError(
                "LayerConcatMeanPooling needs all_layer_embeddings: set output_hidden_states=True in the "
                "encoder config"
            )
        features["sentence_embedding"] = concat_mean_pool(layers, features["attention_mask"], self.top_k)
        return features

    def get_embedding_dimension(self) -> int:
        return self.embedding_dimension * self.top_k

    def get_sentence_embedding_dimension(self) -> int:
        return self.get_embedding_dimension()

    def save(self, output_path: str, *args: Any, **kwargs: Any) -> None:
        self.save_config(output_path)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs: Any) -> LayerConcatMeanPooling:
        hub_kwargs = {k: kwargs[k] for k in ("token", "cache_folder", "revision", "local_files_only") if k in kwargs}
        config = cls.load_config(model_name_or_path=model_name_or_path, subfolder=subfolder, **hub_kwargs)
        return cls(**config)


def concat_mean_pool(layers: tuple[Tensor, ...] | list[Tensor], attention_mask: Tensor, top_k: int) -> Tensor:
    """Masked token mean of each of the last ``top_k`` layers, concatenated along features."""
    mask = attention_mask.unsqueeze(-1).to(layers[-1].dtype)
    denom = mask.sum(dim=1).clamp(min=1e-9)
    pooled = [(layer * mask).sum(dim=1) / denom for layer in layers[-top_k:]]
    return torch.cat(pooled, dim=-1)

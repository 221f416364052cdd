"""Embeddings of categorical user and item features (MeLU's input layer)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from metarec.data.schema import FeatureTable


class FeatureEmbedding(nn.Module):
    """Looks up a row's features and embeds each one; multi-valued features are averaged.

    The feature tables are buffers, so the module maps row indices straight to a vector of
    ``len(features) * dim`` and works under ``torch.func`` transforms unchanged. When the table
    carries text embeddings (``item.text``), their linear projection to ``dim`` is one more
    part, joined to the categorical features or, with ``table.text_only``, replacing them.
    """

    def __init__(self, table: FeatureTable, dim: int):
        super().__init__()
        self.names = [] if table.text_only else sorted(table.values)
        self.embeddings = nn.ModuleDict(
            {name: nn.Embedding(size, dim) for name, size in table.vocab_sizes().items()}
        )
        for name in self.names:
            values = np.asarray(table.values[name], dtype=np.int64)
            self.register_buffer(f"table_{name}", torch.from_numpy(values), persistent=False)
        self.out_dim = len(self.names) * dim
        self.text_projection = self.text_model = None
        if table.text is not None:  # frozen embeddings, rebuilt from the cache, not saved
            text = torch.as_tensor(np.asarray(table.text, dtype=np.float32))
            self.register_buffer("text", text, persistent=False)
            self.text_projection = nn.Linear(text.shape[-1], dim)
            self.out_dim += dim
        elif table.text_model is not None:  # the encoder itself, trained with the network
            self.text_model = table.text_model()
            self.text_projection = nn.Linear(self.text_model.out_dim, dim)
            self.out_dim += dim

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows`` of any shape -> embeddings of shape ``rows.shape + (out_dim,)``."""
        parts = []
        for name in self.names:
            index = getattr(self, f"table_{name}")[rows]  # (..., width), 0 = padding
            present = (index > 0).unsqueeze(-1).to(self.embeddings[name].weight.dtype)
            summed = (self.embeddings[name](index) * present).sum(-2)
            parts.append(summed / present.sum(-2).clamp(min=1.0))
        if self.text_model is not None:
            parts.append(self.text_projection(self.text_model(rows)))
        elif self.text_projection is not None:
            parts.append(self.text_projection(self.text[rows]))
        return torch.cat(parts, dim=-1)

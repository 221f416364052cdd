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
        self.weighted = []  # features averaged over their values (multi-valued or missing)
        for name in self.names:
            values = np.asarray(table.values[name], dtype=np.int64)
            self.register_buffer(f"table_{name}", torch.from_numpy(values), persistent=False)
            # Set only by a learner that cut the tables to a task's rows (``functional.localize``)
            self.register_buffer(f"mix_{name}", None, persistent=False)
            if values.shape[1] > 1 or not (values > 0).all():
                present = values > 0  # each value weighs 1 / count, padding 0
                weight = present / np.maximum(present.sum(1, keepdims=True), 1)
                weight = torch.from_numpy(weight[..., None]).float()  # (rows, width, 1)
                self.register_buffer(f"weight_{name}", weight, persistent=False)
                self.weighted.append(name)
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

    @property
    def row_buffers(self) -> list[str]:
        """The buffers indexed by row, which a learner may cut to a task's rows and then call
        this module with positions in them; none when a text tower reads the rows' ids."""
        if self.text_model is not None:
            return []
        tables = [f"table_{name}" for name in self.names] + [f"weight_{n}" for n in self.weighted]
        return tables + (["text"] if self.text_projection else [])

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows`` of any shape -> embeddings of shape ``rows.shape + (out_dim,)``."""
        parts = []
        for name in self.names:
            mix = getattr(self, f"mix_{name}")
            if mix is not None:  # (rows, values) weights of a task's own embedding rows
                parts.append(mix[rows] @ self.embeddings[name].weight)
                continue
            index = getattr(self, f"table_{name}")[rows]  # (..., width), 0 = padding
            if name in self.weighted:  # the mean of the values' embeddings
                weight = getattr(self, f"weight_{name}")[rows]
                parts.append((self.embeddings[name](index) * weight).sum(-2))
            else:  # exactly one value per row
                parts.append(self.embeddings[name](index.squeeze(-1)))
        if self.text_model is not None:
            parts.append(self.text_projection(self.text_model(rows)))
        elif self.text_projection is not None:
            parts.append(self.text_projection(self.text[rows]))
        return torch.cat(parts, dim=-1)

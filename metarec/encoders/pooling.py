"""Pooling a transformer's token states into one vector per text, over real tokens only."""

from __future__ import annotations

import torch
from torch import Tensor

from metarec.errors import ConfigError

POOLINGS = ("mean", "cls", "last")


def pool(hidden: Tensor, attention_mask: Tensor, pooling: str) -> Tensor:
    """``(B, L, D)`` token states -> ``(B, D)``, looking only at real tokens (mask 1).

    mean: the mean over real tokens; cls: the first real token (position 0 under right
    padding); last: the last real token (decoder LLMs), under right or left padding alike.
    """
    if pooling == "mean":
        weights = attention_mask.to(hidden.dtype).unsqueeze(1)  # (B, 1, L)
        counts = weights.sum(-1).clamp(min=1e-9)  # (B, 1)
        return torch.bmm(weights, hidden).squeeze(1) / counts
    if pooling not in POOLINGS:
        raise ConfigError(f"encoder.pooling: {pooling!r} is not one of {', '.join(POOLINGS)}")
    length = hidden.shape[1]
    positions = torch.arange(length, device=hidden.device)
    real = attention_mask.bool()
    if pooling == "cls":
        index = torch.where(real, positions, length).amin(dim=1).clamp(max=length - 1)
    else:
        index = torch.where(real, positions, -1).amax(dim=1).clamp(min=0)
    # gather, not fancy indexing: it also runs under torch.func.vmap
    index = index[:, None, None].expand(-1, 1, hidden.shape[-1])
    return hidden.gather(1, index).squeeze(1)

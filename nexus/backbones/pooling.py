"""Pooling a sequence of hidden states into one vector per sequence.

Legend: b batch, n tokens, d hidden.
"""

from __future__ import annotations

import torch
from einops import reduce
from torch import Tensor


def last_token_index(attention_mask: Tensor) -> Tensor:
    """'b n' -> 'b': position of the last attended token.

    Read from the mask, never from token ids, so it is right under left and right
    padding and when the pad token is also the eos token.
    """
    positions = torch.arange(attention_mask.shape[-1], device=attention_mask.device)
    return (attention_mask.long() * positions).argmax(dim=-1)


def last_token_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """'b n d', 'b n' -> 'b d': the hidden state of the last non-pad token (decoders)."""
    index = last_token_index(attention_mask)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """'b n d', 'b n' -> 'b d': the mean over attended tokens (encoders, as sentence-transformers)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    total = reduce(hidden * mask, "b n d -> b d", "sum")
    count = reduce(mask, "b n 1 -> b 1", "sum").clamp(min=1.0)
    return total / count


POOLERS = {"last": last_token_pool, "mean": mean_pool}

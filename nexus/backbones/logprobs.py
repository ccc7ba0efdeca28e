"""Log-likelihood features of a causal LM's own tokens: per token, and summarised per input
(mean and min), for the backbones that append them to the pooled features."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def token_logprobs(logits: Tensor, input_ids: Tensor, attention_mask: Tensor,
                   scored_from: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """'b n v', 'b n', 'b n' -> ('b n' log p(token t | tokens < t), 'b n' bool: t was scored).

    Token t is scored by the LM head at position t - 1; the first token and pads are not, nor,
    given `scored_from` 'b', the tokens before that position (the prompt, when it marks where the
    response starts: the response is then scored given the prompt, and the prompt not at all).
    """
    logits = logits[:, :-1].float()
    # gather minus logsumexp: no second vocabulary-sized tensor (49k wide for SmolLM2).
    logp = logits.gather(-1, input_ids[:, 1:, None]).squeeze(-1) - logits.logsumexp(-1)
    valid = F.pad((attention_mask[:, 1:] * attention_mask[:, :-1]).bool(), (1, 0))
    if scored_from is not None:
        positions = torch.arange(valid.shape[1], device=valid.device)
        valid = valid & (positions[None, :] >= scored_from[:, None])
    return F.pad(logp, (1, 0)), valid


def token_logprob_stats(logits: Tensor, input_ids: Tensor, attention_mask: Tensor,
                        scored_from: Tensor | None = None) -> Tensor:
    """'b n v', 'b n', 'b n' -> 'b 2': mean and min log-likelihood of the tokens read.

    Each attended token is scored by the LM head at the position before it. The
    minimum is the single most surprising token: a wrong step stands out there,
    and the prompt, shared by both sides of a pair, cancels in the mean's difference.
    A one-token input has nothing to score and gets 0 for both.
    """
    return logprob_summary(*token_logprobs(logits, input_ids, attention_mask, scored_from))


def running_logprob_stats(logits: Tensor, input_ids: Tensor, attention_mask: Tensor,
                          scored_from: Tensor | None = None) -> Tensor:
    """'b n v', 'b n', 'b n' -> 'b n 2': at every position, the mean and min log-likelihood of
    the tokens read so far (what `token_logprob_stats` gives at the last token, for every prefix)."""
    logp, valid = token_logprobs(logits, input_ids, attention_mask, scored_from)
    mean = torch.where(valid, logp, 0.0).cumsum(-1) / valid.cumsum(-1).clamp(min=1)
    low = torch.where(valid, logp, torch.inf).cummin(-1).values
    return torch.stack([mean, torch.where(torch.isinf(low), 0.0, low)], dim=-1)


def logprob_summary(logp: Tensor, valid: Tensor) -> Tensor:
    """'b n' token log-likelihoods, 'b n' bool scored -> 'b 2' mean and min (as `token_logprob_stats`;
    0 and 0 for a row with no scored token). Padded rows; `grouped_logprob_summary` is the same
    summary of packed rows, each vectorised for its layout."""
    mean = torch.where(valid, logp, 0.0).sum(-1) / valid.sum(-1).clamp(min=1)
    low = torch.where(valid, logp, torch.inf).amin(-1)
    return torch.stack([mean, torch.where(valid.any(-1), low, 0.0)], dim=-1)


def grouped_logprob_summary(logp: Tensor, owner: Tensor, count: int) -> Tensor:
    """'r' token log-likelihoods, 'r' the input each belongs to -> 'c 2' `logprob_summary` per input,
    for `Backbone.forward_packed`, whose rows hold several inputs' tokens (in any order)."""
    logp = logp.float()
    n = torch.zeros(count, device=logp.device).index_add(0, owner, torch.ones_like(logp))
    mean = torch.zeros(count, device=logp.device).index_add(0, owner, logp) / n.clamp(min=1)
    low = torch.full((count,), torch.inf, device=logp.device).scatter_reduce(0, owner, logp, "amin")
    return torch.stack([mean, torch.where(n > 0, low, 0.0)], dim=-1)


def find_marker(input_ids: Tensor, attention_mask: Tensor, marker: Sequence[int], last: bool) -> Tensor:
    """'b n', 'b n', m ids -> 'b' the position just after the first (or `last`) attended occurrence
    of `marker` in each row, and 1 (every token after the first) in a row without one."""
    m = len(marker)
    if m == 0 or input_ids.shape[1] < m:
        return torch.ones(input_ids.shape[0], dtype=torch.long, device=input_ids.device)
    target = torch.tensor(list(marker), device=input_ids.device)
    hits = ((input_ids.unfold(1, m, 1) == target).all(-1)
            & attention_mask.unfold(1, m, 1).bool().all(-1))  # 'b (n - m + 1)'
    index = torch.arange(hits.shape[1], device=input_ids.device)
    where = torch.where(hits, index, -1).amax(-1) if last else torch.where(hits, index, hits.shape[1]).amin(-1)
    found = hits.any(-1)
    return torch.where(found, where + m, torch.ones_like(where))


def marker_position(ids: Sequence[int], marker: Sequence[int], last: bool) -> int:
    """`find_marker` for one token list (the packed layout's python side)."""
    m = len(marker)
    starts = [i for i in range(len(ids) - m + 1) if m and list(ids[i:i + m]) == list(marker)]
    if not starts:
        return 1
    return (starts[-1] if last else starts[0]) + m

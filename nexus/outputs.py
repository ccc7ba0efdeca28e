"""`RewardOutput`: what `RewardModel.score` returns, and how per-batch outputs go back into input order.

Legend: b inputs, k ensemble members, s steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class RewardOutput:
    """What `RewardModel.score` returns, in input order.

    Attributes:
        rewards: 'b' one scalar per (prompt, response); higher is better.
        uncertainty: 'b' standard deviation of the reward, or None.
        step_rewards: per input an 's_i' tensor (process RMs), else None.
        explanations: per input a critique (generative RMs asked to explain), else None.
        extras: family-specific per-input tensors (first dim 'b'), e.g. an ensemble's
            'member_means' 'b k' and 'epistemic_var' 'b'; else None.
    """

    rewards: Tensor
    uncertainty: Tensor | None = None
    step_rewards: list[Tensor] | None = None
    explanations: list[str] | None = None
    extras: dict[str, Tensor] | None = None

    def select(self, part: slice) -> "RewardOutput":
        """The outputs of the inputs in `part` (every per-input field sliced alike)."""
        return RewardOutput(**{field: None if value is None else (
            {k: v[part] for k, v in value.items()} if isinstance(value, dict) else value[part])
            for field, value in vars(self).items()})


def gather_outputs(parts: list[tuple[list[int], RewardOutput]], total: int) -> RewardOutput:
    """Put per-batch outputs back into input order."""
    order = [i for idx, _ in parts for i in idx]
    inverse = torch.empty(total, dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(total)

    def cat(field: str):
        values = [getattr(out, field) for _, out in parts]
        if any(v is None for v in values):
            return None
        if isinstance(values[0], Tensor):
            return torch.cat(values)[inverse]
        if isinstance(values[0], dict):
            return {key: torch.cat([v[key] for v in values])[inverse] for key in values[0]}
        flat = [item for v in values for item in v]
        return [flat[j] for j in inverse.tolist()]

    return RewardOutput(*(cat(f) for f in ("rewards", "uncertainty", "step_rewards", "explanations", "extras")))

"""Collators: examples -> padded tensors for the trainer.

Legend: b pairs, n tokens. Chosen and rejected are packed into one '(2 b) n' batch
(chosen first) so one forward pass scores both, as TRL's RewardTrainer does.
"""

from __future__ import annotations

from typing import Sequence

import torch

from nexus.backbones import Backbone
from nexus.data.formats import PairwiseExample


class PairwiseCollator:
    """list[PairwiseExample] -> {input_ids '(2 b) n', attention_mask '(2 b) n', margin 'b'?}."""

    def __init__(self, backbone: Backbone):
        self.backbone = backbone

    def __call__(self, examples: Sequence[PairwiseExample]) -> dict[str, torch.Tensor]:
        prompts = [ex.prompt for ex in examples]
        responses = [ex.chosen for ex in examples] + [ex.rejected for ex in examples]
        batch = self.backbone.collate(self.backbone.token_ids(prompts + prompts, responses))
        margins = [ex.margin for ex in examples]
        if any(m is not None for m in margins):
            missing = [i for i, m in enumerate(margins) if m is None]
            if missing:
                raise ValueError(f"margin given for some pairs but missing at batch index {missing[0]}")
            batch["margin"] = torch.tensor(margins, dtype=torch.float32)
        return batch

"""Collators: examples -> padded tensors for the trainer.

Legend: b pairs, n tokens. Chosen and rejected are packed into one '(2 b) n' batch
(chosen first) so one forward pass scores both, as TRL's RewardTrainer does.
"""

from __future__ import annotations

from typing import Sequence

import zlib

import numpy as np
import torch

from nexus.backbones import Backbone
from nexus.data.formats import PairwiseExample


def bootstrap_weights(examples: Sequence[PairwiseExample], n_members: int, seed: int = 0) -> torch.Tensor:
    """'b k' Poisson(1) counts: member k's bootstrap resample of the data (Efron 1979).

    Drawn from a hash of each pair's text, so a pair gets the same counts in every epoch and
    process: each member trains on one fixed resample, as an ensemble of bootstraps should.
    """
    rows = []
    for ex in examples:
        key = zlib.crc32("\x00".join((ex.prompt, ex.chosen, ex.rejected)).encode("utf-8"))
        rows.append(np.random.default_rng([seed, key]).poisson(1.0, n_members))
    return torch.tensor(np.stack(rows), dtype=torch.float32)


class PairwiseCollator:
    """list[PairwiseExample] -> {input_ids '(2 b) n', attention_mask '(2 b) n', margin 'b'?,
    member_weights 'b k'? (with `bootstrap_members`)}."""

    def __init__(self, backbone: Backbone, bootstrap_members: int | None = None, seed: int = 0):
        self.backbone = backbone
        self.bootstrap_members, self.seed = bootstrap_members, seed

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
        if self.bootstrap_members:
            batch["member_weights"] = bootstrap_weights(examples, self.bootstrap_members, self.seed)
        return batch

"""Outcome RM: a classifier of final correctness (Cobbe et al. 2021's verifier).

Trained with binary cross-entropy on the outcome format (label 0/1 or a probability). With
`token_level=True` every response token is supervised with the outcome label and the loss is
their average (Cobbe's token-level variant, which they found to generalise better); scoring
always reads the last token. The reward is the logit of P(correct).
Legend: b batch, n tokens, d features.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from nexus.backbones import Backbone
from nexus.backbones.pooling import last_token_index
from nexus.backbone_model import BackboneRewardModel
from nexus.base import labelled_logits_loss
from nexus.outputs import RewardOutput
from nexus.heads import ScalarHead



class OutcomeRewardModel(BackboneRewardModel):
    """Decoder backbone + `ScalarHead` at every position. `forward` returns 'b n' logits;
    `score` returns `rewards: 'b'`, the logit of P(correct) at the last token."""

    model_type = "outcome"
    data_format: ClassVar[str] = "outcome"

    def __init__(self, backbone: Backbone, head_hidden: int = 256, dropout: float = 0.1,
                 token_level: bool = False, batch_size: int = 32):
        super().__init__(batch_size=batch_size)
        self.backbone = backbone
        self.head_hidden, self.dropout, self.token_level = head_hidden, dropout, token_level
        self.head = ScalarHead(backbone.feature_size, head_hidden, dropout)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """'b n', 'b n' -> 'b n' logit of P(correct) after every prefix."""
        return self.head(self.backbone.position_features(input_ids, attention_mask))

    def data_collator(self, seed: int = 0):
        from nexus.data.collators import OutcomeCollator

        return OutcomeCollator(self.backbone, self.token_level)

    def training_loss(self, forward, batch: dict, config) -> tuple[Tensor, dict[str, Tensor]]:
        """Binary cross-entropy of the per-position logits against the collated labels."""
        return labelled_logits_loss(forward, batch)

    def _score_batch(self, prompts: list[str], responses: list[str]) -> RewardOutput:
        batch = self.backbone.encode(prompts, responses)
        logits = self(**batch)
        last = last_token_index(batch["attention_mask"])
        return RewardOutput(rewards=logits[torch.arange(len(logits)), last].float().cpu())

    def config_dict(self) -> dict:
        return {"backbone": self.backbone.spec(), "head_hidden": self.head_hidden, "dropout": self.dropout,
                "token_level": self.token_level, "batch_size": self.batch_size}



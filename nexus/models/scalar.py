"""The classic scalar reward model: backbone + MLP head, trained with Bradley-Terry.

Ouyang et al. 2022 (InstructGPT) and Stiennon et al. 2020: r(x, y) is a scalar read
from the final token's hidden state; P(y_a > y_b) = sigmoid(r_a - r_b).
Legend: b batch, n tokens, d hidden.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from nexus.backbones import Backbone
from nexus.base import RewardModel, RewardOutput
from nexus.heads import ScalarHead

BACKBONE_DIR = "backbone"


class ScalarRewardModel(RewardModel):
    """Backbone + `ScalarHead`.

    `score` returns `rewards: 'b'`; `uncertainty`, `step_rewards` and
    `explanations` are None (a single scalar RM has no notion of them).
    """

    model_type = "scalar"

    def __init__(self, backbone: Backbone, head_hidden: int = 256, dropout: float = 0.1, batch_size: int = 32):
        super().__init__(batch_size=batch_size)
        self.backbone = backbone
        self.head_hidden, self.dropout = head_hidden, dropout
        self.head = ScalarHead(backbone.feature_size, head_hidden, dropout)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """'b n', 'b n' -> 'b' rewards."""
        return self.head(self.backbone(input_ids, attention_mask))

    def _score_batch(self, prompts: list[str], responses: list[str]) -> RewardOutput:
        return RewardOutput(rewards=self(**self.backbone.encode(prompts, responses)).float().cpu())

    def config_dict(self) -> dict:
        return {
            "backbone": self.backbone.spec(), "head_hidden": self.head_hidden,
            "dropout": self.dropout, "batch_size": self.batch_size,
        }

    def _save_extra(self, directory: Path) -> None:
        self.backbone.save_architecture(directory / BACKBONE_DIR)

    @classmethod
    def _from_config(cls, config: dict, directory: Path) -> "ScalarRewardModel":
        backbone = Backbone.from_architecture(directory / BACKBONE_DIR, config["backbone"])
        return cls(backbone, head_hidden=config["head_hidden"], dropout=config["dropout"],
                   batch_size=config["batch_size"])

"""The classic scalar reward model: backbone + MLP head, trained with Bradley-Terry.

Ouyang et al. 2022 (InstructGPT) and Stiennon et al. 2020: r(x, y) is a scalar read
from the final token's hidden state; P(y_a > y_b) = sigmoid(r_a - r_b).
Legend: b batch, n tokens, d hidden, c candidates.
"""

from __future__ import annotations

from torch import Tensor

from nexus.backbone_model import BackboneRewardModel
from nexus.backbones import Backbone
from nexus.outputs import RewardOutput
from nexus.batching import PromptGroup
from nexus.heads import ScalarHead, zero_linear_bias


class ScalarRewardModel(BackboneRewardModel):
    """Backbone + `ScalarHead`.

    `score` returns `rewards: 'b'`; `uncertainty`, `step_rewards` and
    `explanations` are None (a single scalar RM has no notion of them).
    """

    model_type = "scalar"
    packs_prompts = True

    def __init__(self, backbone: Backbone, head_hidden: int = 256, dropout: float = 0.1, batch_size: int = 32):
        super().__init__(batch_size=batch_size)
        self.backbone = backbone
        self.head_hidden, self.dropout = head_hidden, dropout
        self.head = ScalarHead(backbone.feature_size, head_hidden, dropout)
        if head_hidden == 0:
            zero_linear_bias(self.head.net)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, **packed: Tensor) -> Tensor:
        """'b n', 'b n' -> 'b' rewards; or, given `Backbone.pack`'s rows (`position_ids`, `pool_index`,
        `logprob_index` and a 4D mask), 'c' rewards of the inputs packed in them."""
        if packed:
            return self.head(self.backbone.forward_packed(input_ids, attention_mask, **packed))
        return self.head(self.backbone(input_ids, attention_mask))

    def _score_batch(self, prompts: list[str], responses: list[str]) -> RewardOutput:
        return RewardOutput(rewards=self(**self.backbone.encode(prompts, responses)).float().cpu())

    def _score_packed(self, groups: list[PromptGroup]) -> RewardOutput:
        features = self.backbone.packed_features([(g.prefix, g.suffixes) for g in groups])
        return RewardOutput(rewards=self.head(features).float().cpu())

    def config_dict(self) -> dict:
        return {
            "backbone": self.backbone.spec(), "head_hidden": self.head_hidden,
            "dropout": self.dropout, "batch_size": self.batch_size,
        }



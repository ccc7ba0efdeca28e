"""The classic scalar reward model: backbone + MLP head, trained with Bradley-Terry.

Ouyang et al. 2022 (InstructGPT) and Stiennon et al. 2020: r(x, y) is a scalar read
from the final token's hidden state; P(y_a > y_b) = sigmoid(r_a - r_b).
Legend: b batch, n tokens, d hidden, c candidates.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from nexus.backbones import Backbone
from nexus.backbones.backbone import shared_prefix_length
from nexus.backbone_model import BackboneRewardModel
from nexus.base import RewardOutput
from nexus.inputs import validate_inputs
from nexus.batching import PromptGroup
from nexus.heads import ScalarHead



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

    @torch.inference_mode()
    def score_candidates(self, prompt: str, responses: Sequence[str], *, batch_size: int | None = None,
                         normalize: bool = True) -> RewardOutput:
        """Score c responses to one prompt, running their shared token prefix once (best-of-N).

        Returns the rewards 'c' of `score([prompt] * c, responses)`, in order, up to float error.
        The shared part is the longest common prefix of the c token sequences `backbone.token_ids`
        makes, so the split is exact however the tokenizer merges across the prompt/response
        boundary (and it includes the chat template and any common start of the responses); each
        candidate keeps at least its last token. Encoders (which read both ways), inputs over
        max_length and a single candidate fall back to `score`.
        """
        self._check_batching(batch_size)
        validate_inputs([prompt] * len(responses), responses)
        backbone, size = self.backbone, self.batch_size if batch_size is None else batch_size
        ids = backbone.token_ids([prompt] * len(responses), responses)
        shared = shared_prefix_length(ids)
        if backbone.is_encoder or len(ids) < 2 or shared < 1 or max(map(len, ids)) > backbone.max_length:
            return self.score([prompt] * len(responses), responses, batch_size=batch_size, normalize=normalize)
        was_training = self.training
        self.eval()
        try:
            state = backbone.encode_prefix(ids[0][:shared])
            rewards = [self.head(backbone.prefix_features(state, [seq[shared:] for seq in ids[start:start + size]]))
                       for start in range(0, len(ids), size)]
        finally:
            self.train(was_training)
        return self._normalize_output(RewardOutput(rewards=torch.cat(rewards).float().cpu()), normalize)

    def config_dict(self) -> dict:
        return {
            "backbone": self.backbone.spec(), "head_hidden": self.head_hidden,
            "dropout": self.dropout, "batch_size": self.batch_size,
        }



"""Process RM: P(step correct) for every step in one forward pass (Lightman et al. 2023).

Steps are joined with a step-separator token added to the tokenizer; the per-step logit is
read at every separator position, so a 10-step solution costs one forward pass, not ten.
The separator's embedding starts as a copy of the newline's (the delimiter the task LM was
trained with), so a pretrained LM reads the joined steps as it read its training text.

`score` returns `step_rewards` (per input an 's_i' tensor of P(step correct), probabilities)
and `rewards` 'b', the steps aggregated: `min` (the weakest step), `prod` (the product of
step probabilities, Lightman et al.'s P(solution correct)), `last`, or `mean`.
Legend: b batch, n tokens, s steps, d features.
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import torch
from torch import Tensor

from nexus.backbones import Backbone
from nexus.backbone_model import BackboneRewardModel
from nexus.base import labelled_logits_loss
from nexus.outputs import RewardOutput
from nexus.heads import ScalarHead

STEP_TOKEN = "<|step|>"
AGGREGATIONS = ("min", "prod", "last", "mean")
SUPERVISION = ("all", "first_error", "last")


def aggregate_steps(probs: Tensor, how: str) -> Tensor:
    """'s' step probabilities -> '' solution score."""
    if how == "min":
        return probs.min()
    if how == "prod":
        return probs.prod()
    if how == "last":
        return probs[-1]
    if how == "mean":
        return probs.mean()
    raise ValueError(f"aggregation={how!r}: expected one of {AGGREGATIONS}")


def split_steps(response: str | Sequence[str], delimiter: str = "\n") -> list[str]:
    """A response's steps: a sequence is taken as given, a string is split on `delimiter`
    (blank lines dropped). No steps at all (an empty response) is one empty step."""
    steps = [s for s in response.split(delimiter) if s.strip()] if isinstance(response, str) else list(response)
    return steps or [""]


class ProcessRewardModel(BackboneRewardModel):
    """Decoder backbone + `ScalarHead` read at each step separator. `forward` returns 'b n' logits."""

    model_type = "process"
    accepts_steps = True
    data_format: ClassVar[str] = "process"

    def __init__(self, backbone: Backbone, head_hidden: int = 256, dropout: float = 0.1, aggregation: str = "min",
                 supervise: str = "all", step_delimiter: str = "\n", batch_size: int = 32):
        super().__init__(batch_size=batch_size)
        if aggregation not in AGGREGATIONS or supervise not in SUPERVISION:
            raise ValueError(f"ProcessRewardModel: aggregation={aggregation!r} must be one of {AGGREGATIONS}, "
                             f"supervise={supervise!r} one of {SUPERVISION}")
        self.backbone = backbone
        self.head_hidden, self.dropout, self.aggregation = head_hidden, dropout, aggregation
        self.supervise, self.step_delimiter = supervise, step_delimiter
        self.step_id = self._add_step_token(backbone)
        self.head = ScalarHead(backbone.feature_size, head_hidden, dropout)

    @staticmethod
    def _add_step_token(backbone: Backbone) -> int:
        """The separator's id; added (embedding copied from the newline's) if the tokenizer lacks it."""
        tokenizer = backbone.tokenizer
        if STEP_TOKEN not in tokenizer.get_vocab():
            tokenizer.add_special_tokens({"additional_special_tokens": [STEP_TOKEN]})
            model = backbone.model
            model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
            embeddings = model.get_input_embeddings()
            newline = tokenizer.encode("\n", add_special_tokens=False)
            with torch.no_grad():
                row = embeddings.weight[newline[0]] if len(newline) == 1 else embeddings.weight[:-1].mean(0)
                embeddings.weight[-1] = row
        return tokenizer.convert_tokens_to_ids(STEP_TOKEN)

    @staticmethod
    def check_steps(steps: Sequence[str], where: str) -> None:
        for j, step in enumerate(steps):
            if STEP_TOKEN in step:
                raise ValueError(f"{where}[{j}] contains the reserved step token {STEP_TOKEN!r}")

    def _check_inputs(self, prompts: Sequence[str], responses: Sequence) -> None:
        for i, response in enumerate(responses):
            self.check_steps(split_steps(response, self.step_delimiter), f"responses[{i}]")

    def step_token_ids(self, prompts: Sequence[str], steps: Sequence[Sequence[str]]) -> list[list[int]]:
        """Token ids per (prompt, steps), with one separator after every step."""
        return self.backbone.token_ids(prompts, ["".join(step + STEP_TOKEN for step in s) for s in steps])

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """'b n', 'b n' -> 'b n' step logits (read only at separator positions)."""
        return self.head(self.backbone.position_features(input_ids, attention_mask))

    def data_collator(self, seed: int = 0):
        from nexus.data.collators import ProcessCollator

        return ProcessCollator(self)

    def training_loss(self, forward, batch: dict, config) -> tuple[Tensor, dict[str, Tensor]]:
        """Binary cross-entropy of the per-position logits against the collated labels."""
        return labelled_logits_loss(forward, batch)

    def _score_batch(self, prompts: list[str], responses: list) -> RewardOutput:
        steps = [split_steps(r, self.step_delimiter) for r in responses]
        batch = self.backbone.collate(self.step_token_ids(prompts, steps))
        batch = {k: v.to(self.device) for k, v in batch.items()}
        probs = torch.sigmoid(self(**batch).float()).cpu()
        is_step = (batch["input_ids"] == self.step_id).cpu() & batch["attention_mask"].bool().cpu()
        step_rewards = []
        for i, row in enumerate(probs):
            found = row[is_step[i]]
            if len(found) != len(steps[i]):  # truncation cut the first steps; say so rather than guess
                raise ValueError(f"a response of {len(steps[i])} steps (first {steps[i][0][:40]!r}) has only "
                                 f"{len(found)} within max_length={self.backbone.max_length} tokens; shorten it "
                                 "or raise max_length")
            step_rewards.append(found)
        rewards = torch.stack([aggregate_steps(s, self.aggregation) for s in step_rewards])
        return RewardOutput(rewards=rewards, step_rewards=step_rewards)

    def preference_logits(self, out_a: RewardOutput, out_b: RewardOutput) -> Tensor:
        """Bradley-Terry on the log-odds of the aggregated step probabilities."""
        return torch.logit(out_a.rewards, eps=1e-6) - torch.logit(out_b.rewards, eps=1e-6)

    def config_dict(self) -> dict:
        return {"backbone": self.backbone.spec(), "head_hidden": self.head_hidden, "dropout": self.dropout,
                "aggregation": self.aggregation, "supervise": self.supervise,
                "step_delimiter": self.step_delimiter, "batch_size": self.batch_size}



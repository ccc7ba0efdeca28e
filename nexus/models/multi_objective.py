"""Multi-objective RM: one reward per named objective, mixed by weights set at score time.

A shared backbone and a `MultiObjectiveHead` give r_o(x, y) for every objective o (helpfulness,
harmlessness, honesty, ...); `score` returns r = sum_o w_o r_o and every r_o in `extras`. Training
is one Bradley-Terry loss per objective on per-objective preference labels, the setup of
multi-attribute reward models such as ArmoRM (Wang et al. 2024) and of the per-objective RMs of
Safe RLHF (Dai et al. 2023), here in one model with one head per objective. The data are pairwise
examples whose `extra["labels"]` say, per objective, whether chosen is preferred (1), rejected is
(0), a probability in between, or nothing (unlabelled: masked out of that objective's loss); see
`nexus.data.collators.objective_labels`. Legend: b batch, n tokens, d features, o objectives.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from nexus.backbones import Backbone
from nexus.backbone_model import BackboneRewardModel
from nexus.outputs import RewardOutput
from nexus.data.collators import IGNORE, MultiObjectiveCollator, objective_labels
from nexus.data.formats import PairwiseExample
from nexus.heads import MultiObjectiveHead, zero_linear_bias
from nexus.losses import multi_objective_bt_loss

DEFAULT_OBJECTIVES = ("helpfulness", "harmlessness", "honesty")
RESERVED = ("raw_rewards",)  # extras keys that `nexus.normalize` writes


def check_objectives(objectives: Sequence[str]) -> list[str]:
    """The objective names as a list: non-empty, distinct strings, none of them reserved.

    Raises:
        ValueError: naming `objectives[i]` that is not a non-empty string, repeats one, or is reserved.
    """
    if isinstance(objectives, (str, bytes)) or not isinstance(objectives, Sequence) or not objectives:
        raise ValueError(f"objectives must be a non-empty list of names, got {objectives!r}")
    for i, name in enumerate(objectives):
        if not isinstance(name, str) or not name:
            raise ValueError(f"objectives[{i}] = {name!r}: expected a non-empty string")
        if name in objectives[:i]:
            raise ValueError(f"objectives[{i}] = {name!r} repeats objectives[{list(objectives).index(name)}]")
        if name in RESERVED:
            raise ValueError(f"objectives[{i}] = {name!r} is reserved (a key nexus.normalize writes into extras)")
    return list(objectives)


def parse_objective_weights(weights: Mapping[str, float] | Sequence[float] | None,
                            objectives: Sequence[str]) -> list[float]:
    """One weight per objective, in objective order: None gives 1/o each (the mean of the objectives);
    a mapping must name every objective; a sequence is in objective order. Weights are finite, >= 0
    and not all 0; they are used as given (r = sum_o w_o r_o), not renormalised.

    Raises:
        ValueError: naming the objective or index whose weight is missing, unknown or invalid.
    """
    if weights is None:
        return [1.0 / len(objectives)] * len(objectives)
    if isinstance(weights, Mapping):
        unknown = sorted(set(weights) - set(objectives))
        missing = [name for name in objectives if name not in weights]
        if unknown or missing:
            what = f"unknown objective {unknown[0]!r}" if unknown else f"no weight for {missing[0]!r}"
            raise ValueError(f"weights: {what}; give one for each of {', '.join(objectives)}")
        values, names = [weights[name] for name in objectives], [f"weights[{name!r}]" for name in objectives]
    elif isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise ValueError(f"weights must be a dict from objective to weight or a list, got {type(weights).__name__}")
    else:
        if len(weights) != len(objectives):
            raise ValueError(f"weights has {len(weights)} entries but there are {len(objectives)} objectives "
                             f"({', '.join(objectives)})")
        values, names = list(weights), [f"weights[{i}]" for i in range(len(weights))]
    for name, w in zip(names, values):
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ValueError(f"{name} = {w!r}: every weight must be a finite number >= 0")
    if not any(values):
        raise ValueError("weights are all 0: at least one objective must count")
    return [float(w) for w in values]


class MultiObjectiveRewardModel(BackboneRewardModel):
    """Backbone + `MultiObjectiveHead`: a reward per objective, combined by weights.

    `score(prompts, responses, weights=None)` returns `rewards: 'b'` = sum_o w_o r_o with the
    model's weights (`set_weights`, saved in config.json) or, for one call, `weights`; `extras`
    hold each objective's reward 'b' under its name. `uncertainty`, `step_rewards` and
    `explanations` are None. `compare` is Bradley-Terry on the combined rewards.

    Args:
        backbone: the pretrained backbone.
        objectives: the objective names, e.g. ["helpfulness", "harmlessness", "honesty"].
        weights: a dict from objective to weight, a list in objective order, or None (1/o each).
        head_hidden, dropout: the shared trunk of the head (`hidden=0`: one linear layer).
    """

    model_type = "multi_objective"
    call_options = ("weights",)

    def __init__(self, backbone: Backbone, objectives: Sequence[str] = DEFAULT_OBJECTIVES,
                 weights: Mapping[str, float] | Sequence[float] | None = None, head_hidden: int = 256,
                 dropout: float = 0.0, batch_size: int = 32):
        super().__init__(batch_size=batch_size)
        self.objectives = check_objectives(objectives)
        self.weights = parse_objective_weights(weights, self.objectives)
        self.backbone, self.head_hidden, self.dropout = backbone, head_hidden, dropout
        self.head = MultiObjectiveHead(backbone.feature_size, len(self.objectives), head_hidden, dropout)
        if head_hidden == 0:
            zero_linear_bias(self.head.net.net)

    def set_weights(self, weights: Mapping[str, float] | Sequence[float] | None) -> "MultiObjectiveRewardModel":
        """Set the weights `score` uses by default (and `save_pretrained` records)."""
        self.weights = parse_objective_weights(weights, self.objectives)
        return self

    def weight_vector(self, weights=None) -> Tensor:
        """'o' float32: `weights` parsed, or the model's."""
        values = self.weights if weights is None else parse_objective_weights(weights, self.objectives)
        return torch.tensor(values, dtype=torch.float32)

    def objective_rewards(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """'b n', 'b n' -> 'b o' rewards per objective."""
        return self.head(self.backbone(input_ids, attention_mask))

    def training_loss(self, forward, batch: dict, config) -> tuple[Tensor, dict[str, Tensor]]:
        """`forward` computes the loss itself from the whole batch: the per-objective Bradley-Terry loss over the whole batch."""
        outputs = forward(**batch)
        return outputs["loss"], outputs

    def forward(self, input_ids: Tensor, attention_mask: Tensor, preferences: Tensor | None = None) -> dict:
        """A training batch '(2 b) n' (chosen then rejected) -> {"rewards": 'b 2' combined rewards of
        chosen and rejected, and with `preferences` 'b o' (IGNORE where unlabelled): "loss" '' and
        "objective_losses" 'o' (`nexus.losses.multi_objective_bt_loss`)}."""
        rewards = self.objective_rewards(input_ids, attention_mask)
        chosen, rejected = rearrange(rewards, "(two b) o -> two b o", two=2)
        w = self.weight_vector().to(rewards.device, rewards.dtype)
        out = {"rewards": torch.stack([chosen @ w, rejected @ w], dim=-1)}
        if preferences is not None:
            out["loss"], out["objective_losses"] = multi_objective_bt_loss(chosen, rejected, preferences, IGNORE)
        return out

    def data_collator(self, seed: int = 0):
        return MultiObjectiveCollator(self.backbone, self.objectives, seed=seed)

    def _score_batch(self, prompts: list[str], responses: list[str], **columns) -> RewardOutput:
        per = self.objective_rewards(**self.backbone.encode(prompts, responses)).float().cpu()
        extras = {name: per[:, i] for i, name in enumerate(self.objectives)}
        return RewardOutput(rewards=per @ self.weight_vector(), extras=extras)

    def _combine(self, out: RewardOutput, vector: Tensor) -> RewardOutput:
        """`out` with rewards recombined from its per-objective extras under the 'o' weights."""
        per = torch.stack([out.extras[name] for name in self.objectives], dim=-1)
        out.rewards = per @ vector
        return out

    def _check_options(self, weights=None) -> dict:
        """`weights` for this call (None: the model's) as the 'o' vector; invalid weights fail
        before any scoring."""
        return {"weights": self.weight_vector(weights)}

    def _finish(self, out: RewardOutput, weights: Tensor) -> RewardOutput:
        """Rewards 'b' = sum_o w_o r_o under this call's weights; `extras[name]` is r_o. A normaliser
        (if set) applies to the combined reward afterwards."""
        return self._combine(out, weights)

    def config_dict(self) -> dict:
        return {"backbone": self.backbone.spec(), "objectives": self.objectives, "weights": self.weights,
                "head_hidden": self.head_hidden, "dropout": self.dropout, "batch_size": self.batch_size}




def objective_accuracy(rm: MultiObjectiveRewardModel, pairs: Sequence[PairwiseExample]) -> dict[str, dict]:
    """Per objective, the pairwise accuracy of r_o on the pairs labelled on it (label 0.5: skipped).

    Returns:
        {objective: {"accuracy": fraction ordered as the label says (ties count 1/2; NaN if none),
        "n": pairs counted}}. Pairs without `extra["labels"]` count on every objective, as in training.
    """
    if not pairs:
        raise ValueError("no pairs to evaluate")
    labels = np.array([objective_labels(p, rm.objectives, i) or [1.0] * len(rm.objectives)
                       for i, p in enumerate(pairs)])
    prompts = [p.prompt for p in pairs]
    out = rm.score(prompts + prompts, [p.chosen for p in pairs] + [p.rejected for p in pairs], normalize=False)
    report = {}
    for o, name in enumerate(rm.objectives):
        diff = (out.extras[name][: len(pairs)] - out.extras[name][len(pairs):]).double().numpy()
        y = labels[:, o]
        keep = (y != IGNORE) & (y != 0.5)
        sign = np.where(y[keep] > 0.5, 1.0, -1.0) * diff[keep]
        accuracy = float(np.mean((sign > 0) + 0.5 * (sign == 0))) if keep.any() else float("nan")
        report[name] = {"accuracy": accuracy, "n": int(keep.sum())}
    return report

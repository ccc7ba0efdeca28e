"""Enhanced RM: K reward heads on one shared backbone, with uncertainty (issue 3).

One forward pass of the backbone serves all K members (form (a) of issue 3). Each member
is a scalar head or a Gaussian head (mean and log-variance). Diversity comes from per-member
init seeds, bootstrap resampling of the training pairs (Efron 1979; Lakshminarayanan et al.
2017) and an optional fixed random prior per head (randomised prior functions, Osband et al.
2018). Uncertainty splits into aleatoric (the mean predicted variance) and epistemic (the
variance of the member means), as in Depeweg et al. 2018.

Legend: b batch, n tokens, d features, k members.
"""

from __future__ import annotations

from pathlib import Path

import torch
from einops import reduce
from torch import Tensor, nn

from nexus.backbones import Backbone
from nexus.base import RewardModel, RewardOutput
from nexus.heads import ScalarHead
from nexus.losses import probit_preference_logits, weighted_preference_loss

BACKBONE_DIR = "backbone"
AGGREGATIONS = ("mean", "min", "uwo", "lcb")


def aggregate(means: Tensor, total_var: Tensor, how: str, uwo_lambda: float, lcb_k: float) -> Tensor:
    """'b k' member means, 'b' total variance -> 'b' reward.

    mean: the ensemble mean; min: worst case over members (WCO, Coste et al. 2023);
    uwo: mean - lambda * variance of the member means (Coste et al. 2023 eq. 4);
    lcb: mean - k * total std (a lower confidence bound).
    """
    mean = reduce(means, "b k -> b", "mean")
    if how == "mean":
        return mean
    if how == "min":
        return reduce(means, "b k -> b", "min")
    if how == "uwo":
        return mean - uwo_lambda * means.var(dim=-1, unbiased=False)
    if how == "lcb":
        return mean - lcb_k * total_var.sqrt()
    raise ValueError(f"aggregation={how!r}: expected one of {AGGREGATIONS}")


class EnsembleRewardModel(RewardModel):
    """K heads on one backbone. `forward` returns 'b k 2' (member mean, member variance).

    `score` returns `rewards: 'b'` (aggregated as `aggregation` says), `uncertainty: 'b'`
    (total std) and `extras` with 'member_means' 'b k', 'member_vars' 'b k',
    'epistemic_var' 'b' and 'aleatoric_var' 'b' (zero for scalar heads).
    """

    model_type = "ensemble"

    def __init__(self, backbone: Backbone, n_members: int = 4, head: str = "scalar", head_hidden: int = 256,
                 dropout: float = 0.0, aggregation: str = "mean", uwo_lambda: float = 1.0, lcb_k: float = 1.0,
                 prior_scale: float = 0.0, bootstrap: bool = True, seed: int = 0, batch_size: int = 32):
        super().__init__(batch_size=batch_size)
        if n_members < 1 or head not in ("scalar", "gaussian") or aggregation not in AGGREGATIONS:
            raise ValueError(f"EnsembleRewardModel: n_members={n_members} must be >= 1, head={head!r} one of "
                             f"('scalar', 'gaussian'), aggregation={aggregation!r} one of {AGGREGATIONS}")
        self.backbone = backbone
        self.n_members, self.head, self.head_hidden, self.dropout = n_members, head, head_hidden, dropout
        self.aggregation, self.uwo_lambda, self.lcb_k = aggregation, uwo_lambda, lcb_k
        self.prior_scale, self.bootstrap, self.seed = prior_scale, bootstrap, seed
        outputs = 2 if head == "gaussian" else 1
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # per-member init seeds follow from the ensemble's seed
            self.heads = nn.ModuleList(
                ScalarHead(backbone.feature_size, head_hidden, dropout, outputs) for _ in range(n_members))
            self.priors = nn.ModuleList(
                ScalarHead(backbone.feature_size, head_hidden, 0.0, 1) for _ in range(n_members if prior_scale else 0))
        self.priors.requires_grad_(False)  # fixed random functions, never trained

    @property
    def bootstrap_members(self) -> int | None:
        """How many bootstrap weight columns the collator should draw (None: no bootstrap)."""
        return self.n_members if self.bootstrap else None

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """'b n', 'b n' -> 'b k 2': each member's reward mean and variance."""
        features = self.backbone(input_ids, attention_mask)
        outs = torch.stack([head(features) for head in self.heads], dim=1)  # 'b k' or 'b k 2'
        if self.head == "scalar":
            means, variances = outs, torch.zeros_like(outs)
        else:
            means, variances = outs[..., 0], outs[..., 1].clamp(-10.0, 10.0).exp()
        if self.prior_scale:
            prior = torch.stack([p(features.detach()) for p in self.priors], dim=1)
            means = means + self.prior_scale * prior
        return torch.stack([means, variances], dim=-1)

    def pair_loss(self, chosen: Tensor, rejected: Tensor, weights: Tensor | None, label_smoothing: float) -> Tensor:
        """'b k 2' outputs of chosen and rejected -> '' loss, all members in one step."""
        logits = probit_preference_logits(chosen[..., 0], chosen[..., 1], rejected[..., 0], rejected[..., 1])
        return weighted_preference_loss(logits, weights, label_smoothing)

    def reduce(self, outputs: Tensor) -> Tensor:
        """'b k 2' -> 'b' aggregated reward (used for training-time metrics)."""
        means, variances = outputs[..., 0], outputs[..., 1]
        total = means.var(dim=-1, unbiased=False) + variances.mean(dim=-1)
        return aggregate(means, total, self.aggregation, self.uwo_lambda, self.lcb_k)

    def _score_batch(self, prompts: list[str], responses: list[str]) -> RewardOutput:
        out = self(**self.backbone.encode(prompts, responses)).float().cpu()
        means, variances = out[..., 0], out[..., 1]
        epistemic, aleatoric = means.var(dim=-1, unbiased=False), variances.mean(dim=-1)
        total = epistemic + aleatoric
        rewards = aggregate(means, total, self.aggregation, self.uwo_lambda, self.lcb_k)
        extras = {"member_means": means, "member_vars": variances, "epistemic_var": epistemic,
                  "aleatoric_var": aleatoric}
        return RewardOutput(rewards=rewards, uncertainty=total.sqrt(), extras=extras)

    def compare(self, prompts, responses_a, responses_b) -> Tensor:
        """'b': P(a preferred to b), the probit-integrated probability averaged over members."""
        a = self.score(prompts, responses_a).extras
        b = self.score(prompts, responses_b).extras
        logits = probit_preference_logits(a["member_means"], a["member_vars"], b["member_means"], b["member_vars"])
        return reduce(torch.sigmoid(logits), "b k -> b", "mean")

    def config_dict(self) -> dict:
        return {
            "backbone": self.backbone.spec(), "n_members": self.n_members, "head": self.head,
            "head_hidden": self.head_hidden, "dropout": self.dropout, "aggregation": self.aggregation,
            "uwo_lambda": self.uwo_lambda, "lcb_k": self.lcb_k, "prior_scale": self.prior_scale,
            "bootstrap": self.bootstrap, "seed": self.seed, "batch_size": self.batch_size,
        }

    def _save_extra(self, directory: Path) -> None:
        self.backbone.save_architecture(directory / BACKBONE_DIR)

    @classmethod
    def _from_config(cls, config: dict, directory: Path) -> "EnsembleRewardModel":
        kwargs = {k: v for k, v in config.items() if k not in ("model_type", "backbone")}
        return cls(Backbone.from_architecture(directory / BACKBONE_DIR, config["backbone"]), **kwargs)



"""Enhanced RM: an ensemble of K reward members with uncertainty.

Members come in three forms: `shared` (K heads on one backbone: one forward pass serves
all K), `lora` (K LoRA adapters on one frozen base model, `peft`), and `independent` (K
backbones: copies of one pretrained model, or differently pretrained ones, the baseline of
Coste et al. 2023 and Eisenstein et al. 2023). Each member has a scalar head or a Gaussian
head (mean and log-variance). Diversity comes from per-member
init seeds, bootstrap resampling of the training pairs (Efron 1979; Lakshminarayanan et al.
2017) and an optional fixed random prior per head (randomised prior functions, Osband et al.
2018). Uncertainty splits into aleatoric (the mean predicted variance) and epistemic (the
variance of the member means), as in Depeweg et al. 2018.

Bradley-Terry training fixes each member's reward only up to a shift (and the members' scales
drift apart), so the worst case, UWO, LCB and the epistemic variance compare arbitrary offsets
unless the members are first standardised on a reference set (`standardize_members`).

Legend: b batch, n tokens, d features, k members.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import Tensor, nn

from nexus.backbones import Backbone, load_backbone
from nexus.backbone_model import BACKBONE_DIR, BackboneRewardModel
from nexus.base import MODEL_INPUTS
from nexus.outputs import RewardOutput
from nexus.heads import ScalarHead
from nexus.losses import probit_preference_logits, reward_centering_loss, weighted_preference_loss
from nexus.validation import check_positive_int

AGGREGATIONS = ("mean", "min", "uwo", "lcb")
FORMS = ("shared", "lora", "independent")
PRIOR_FEATURES = 64  # width of the frozen random token embedding the priors read
MIN_REFERENCE = 2  # a member's spread needs at least two reference inputs


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


def standardize(means: Tensor, variances: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """'b k' member means and variances, 'k' shift and scale -> 'b k 2' standardised (mean, variance).

    Each member's reward becomes (m - shift) / scale, so its predicted variance is divided by scale^2.
    """
    return torch.stack([(means - shift) / scale, variances / scale**2], dim=-1)


def ensemble_preference_logits(means_a: Tensor, vars_a: Tensor, means_b: Tensor, vars_b: Tensor) -> Tensor:
    """'b k' member Gaussians of a and b -> 'b' log-odds of P(a > b) averaged over members.

    Each member's probability integrates its Gaussian (probit approximation); the ensemble's
    is their mean (a mixture, Lakshminarayanan et al. 2017), returned as log-odds so a
    temperature can divide it: log mean_k sigmoid(z_k) - log mean_k sigmoid(-z_k).
    """
    z = probit_preference_logits(means_a, vars_a, means_b, vars_b)
    return torch.logsumexp(F.logsigmoid(z), dim=-1) - torch.logsumexp(F.logsigmoid(-z), dim=-1)


class FeatureBank(nn.Module):
    """A FIFO memory of recent pooled features 'm k d' and member rewards 'm k' (no gradient).

    `consistency(features, means)` is the mean squared gap between the rewards of the batch
    and those stored for bank entries whose features are near-identical (cosine similarity at
    least `threshold`), per member: a smoothness penalty in feature space, in the spirit of
    the memory banks of Wu et al. 2018 and the temporal ensembles of Laine & Aila 2017.
    The bank is not part of the checkpoint.
    """

    def __init__(self, size: int, threshold: float):
        super().__init__()
        if size < 1 or not -1.0 <= threshold <= 1.0:
            raise ValueError(f"FeatureBank: size={size} must be >= 1, threshold={threshold} in [-1, 1]")
        self.size, self.threshold, self.filled, self.cursor = size, threshold, 0, 0
        self.register_buffer("features", torch.zeros(0), persistent=False)
        self.register_buffer("rewards", torch.zeros(0), persistent=False)

    def consistency(self, features: Tensor, means: Tensor) -> Tensor:
        """'b k d' features, 'b k' member means -> '' penalty (0 while nothing is near)."""
        if not self.filled:
            return means.sum() * 0.0
        bank_f, bank_r = self.features[: self.filled], self.rewards[: self.filled]
        sim = torch.einsum("bkd,mkd->bmk", F.normalize(features, dim=-1), bank_f)
        near = (sim >= self.threshold).to(means.dtype)
        gap = (means[:, None, :] - bank_r[None, :, :]) ** 2  # 'b m k'
        return (near * gap).sum() / near.sum().clamp(min=1.0)

    @torch.no_grad()
    def push(self, features: Tensor, means: Tensor) -> None:
        """Store 'b k d' features (normalised) and 'b k' means, overwriting the oldest."""
        if self.features.numel() == 0:
            self.features = features.new_zeros(self.size, *features.shape[1:])
            self.rewards = means.new_zeros(self.size, means.shape[1])
        features, means = features[-self.size:], means[-self.size:]  # a batch larger than the bank
        rows = torch.arange(self.cursor, self.cursor + len(features), device=features.device) % self.size
        self.features[rows] = F.normalize(features.detach(), dim=-1).to(self.features.dtype)
        self.rewards[rows] = means.detach().to(self.rewards.dtype)
        self.cursor = int((self.cursor + len(features)) % self.size)
        self.filled = min(self.size, self.filled + len(features))


class EnsembleRewardModel(BackboneRewardModel):
    """K members. `forward` returns 'b k 2' (member mean, member variance), raw.

    `score` returns `rewards: 'b'` (aggregated as `aggregation` says), `uncertainty: 'b'`
    (total std) and `extras` with 'member_means' 'b k', 'member_vars' 'b k',
    'epistemic_var' 'b' and 'aleatoric_var' 'b' (zero for scalar heads). Once
    `standardize_members` has been fitted, all of them (and `compare`) read the standardised
    members: each member has mean 0 and std 1 on the reference set. Standardising to 0/1 rather
    than to the members' pooled mean and std makes every output exactly invariant to a shift or
    positive rescaling of any one member (a pooled target moves with the member that moved), and
    makes `uwo_lambda` and `lcb_k` unit-free: rewards are in reference standard deviations. The
    price is that `compare`'s log-odds are no longer in the members' own Bradley-Terry units, so
    `calibrate` after standardising.

    Args:
        backbone: the pretrained backbone; `form="lora"` needs it loaded with `lora`.
        form: "shared", "lora" or "independent" (see the module docstring).
        member_backbones: `independent` only: one backbone name or path per member
            (pretrain-seed diversity, e.g. `arith-lm-s0` .. `arith-lm-s7`), loaded with the
            options of `backbone`; None: K copies of `backbone` (fine-tune-seed diversity).
        prior_scale: weight of each member's fixed random prior function (0: none; see `prior_outputs`).
        consistency_weight: weight of the feature-bank consistency penalty (0: off).
        reference_size: how many inputs the member standardisation was fitted on (0: none, the
            identity); `standardize_members` sets it, and config.json records it so that a checkpoint's
            saved shift and scale load.
    """

    model_type = "ensemble"
    saved_entries = (BACKBONE_DIR, f"{BACKBONE_DIR}_[0-9]*")  # member i > 0 in backbone_<i>

    def __init__(self, backbone: Backbone, n_members: int = 4, form: str = "shared",
                 member_backbones: list[str] | None = None, head: str = "scalar", head_hidden: int = 256,
                 dropout: float = 0.0, aggregation: str = "mean", uwo_lambda: float = 1.0, lcb_k: float = 1.0,
                 prior_scale: float = 0.0, bootstrap: bool = True, consistency_weight: float = 0.0,
                 bank_size: int = 1024, consistency_threshold: float = 0.99, seed: int = 0,
                 batch_size: int = 32, reference_size: int = 0, members: list[Backbone] | None = None):
        super().__init__(batch_size=batch_size)
        check_positive_int("n_members", n_members)
        if check_positive_int("reference_size", reference_size, 0) == 1:
            raise ValueError(f"reference_size=1: expected 0 (not standardised) or >= {MIN_REFERENCE}")
        if consistency_weight:
            check_positive_int("bank_size", bank_size)
        if head not in ("scalar", "gaussian") or aggregation not in AGGREGATIONS or form not in FORMS:
            raise ValueError(f"EnsembleRewardModel: head={head!r} must be one of "
                             f"('scalar', 'gaussian'), aggregation={aggregation!r} one of {AGGREGATIONS}, "
                             f"form={form!r} one of {FORMS}")
        if member_backbones is not None and (form != "independent" or len(member_backbones) != n_members):
            raise ValueError(f"member_backbones (length {len(member_backbones)}) needs form='independent' "
                             f"(got {form!r}) and one name per member (n_members={n_members})")
        self.n_members, self.form = n_members, form
        self.member_backbones = None if member_backbones is None else [str(m) for m in member_backbones]
        self.head, self.head_hidden, self.dropout = head, head_hidden, dropout
        self.aggregation, self.uwo_lambda, self.lcb_k = aggregation, uwo_lambda, lcb_k
        self.prior_scale, self.bootstrap, self.seed = prior_scale, bootstrap, seed
        self.consistency_weight = consistency_weight
        self.bank_size, self.consistency_threshold = bank_size, consistency_threshold
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # per-member init seeds follow from the ensemble's seed
            self.backbones = nn.ModuleList(members or self._build_members(backbone))
            outputs = 2 if head == "gaussian" else 1
            features = self.backbone.feature_size
            self.heads = nn.ModuleList(ScalarHead(features, head_hidden, dropout, outputs) for _ in range(n_members))
            self.priors = nn.ModuleList(
                ScalarHead(PRIOR_FEATURES, head_hidden, 0.0, 1) for _ in range(n_members if prior_scale else 0))
            # Saved with the weights (not regenerated from the seed), so a checkpoint keeps its priors exactly.
            self.register_buffer("prior_embedding", torch.randn(self._vocab_size(), PRIOR_FEATURES)
                                 if prior_scale else None)
        self.priors.requires_grad_(False)  # fixed random functions, never trained
        self.reference_size = 0
        self.register_buffer("member_shift", torch.zeros(n_members), persistent=False)
        self.register_buffer("member_scale", torch.ones(n_members), persistent=False)
        self._set_standardization(self.member_shift, self.member_scale, reference_size)
        self.bank = FeatureBank(bank_size, consistency_threshold) if consistency_weight else None
        self.aux_loss: Tensor | None = None  # set by a training forward; the trainer adds it

    def _build_members(self, backbone: Backbone) -> list[Backbone]:
        if self.form == "shared":
            return [backbone]
        if self.form == "lora":
            model = backbone.model
            if backbone.lora is None or not hasattr(model, "add_adapter"):
                raise ValueError("form='lora' needs a backbone loaded with LoRA adapters "
                                 "(backbone.lora={r: 8, alpha: 16, ...})")
            for name in self.adapter_names[1:]:  # the first adapter is peft's "default"
                model.add_adapter(name, copy.deepcopy(model.peft_config["default"]))
            return [backbone]
        if self.member_backbones is None:  # fine-tune-seed diversity: copies of one pretrained model
            return [backbone] + [copy.deepcopy(backbone) for _ in range(self.n_members - 1)]
        spec = backbone.spec()
        options = {k: spec[k] for k in ("pooling", "max_length", "padding_side", "lora", "lm_head", "lm_logprobs", "dtype",
                                           "logprob_scope")}
        members = [load_backbone(name, seed=self.seed + i, **options) for i, name in enumerate(self.member_backbones)]
        vocab = members[0].tokenizer.get_vocab()
        for i, member in enumerate(members[1:], start=1):
            if member.tokenizer.get_vocab() != vocab:
                raise ValueError(f"member_backbones[{i}]={self.member_backbones[i]!r} has another tokenizer than "
                                 f"member_backbones[0]={self.member_backbones[0]!r}; members must share one")
        return members

    def _vocab_size(self) -> int:
        """Rows of the backbone's input embedding: every token id the model can read."""
        return self.backbone.model.get_input_embeddings().num_embeddings

    @property
    def backbone(self) -> Backbone:
        """The backbone that tokenizes (all members share its tokenizer)."""
        return self.backbones[0]

    @property
    def adapter_names(self) -> list[str]:
        return ["default"] + [f"member{i}" for i in range(1, self.n_members)]

    @property
    def bootstrap_members(self) -> int | None:
        """How many bootstrap weight columns the collator should draw (None: no bootstrap)."""
        return self.n_members if self.bootstrap else None

    def member_features(self, input_ids: Tensor, attention_mask: Tensor) -> list[Tensor]:
        """'b n', 'b n' -> K pooled features 'b d' (for `shared`, one tensor K times)."""
        if self.form == "shared":
            return [self.backbone(input_ids, attention_mask)] * self.n_members
        if self.form == "independent":
            return [member(input_ids, attention_mask) for member in self.backbones]
        model, features = self.backbone.model, []
        for name in self.adapter_names:
            model.set_adapter(name)
            features.append(self.backbone(input_ids, attention_mask))
        # peft's set_adapter freezes the inactive adapters; every member trains in the same step.
        for param_name, param in model.named_parameters():
            if "lora_" in param_name:
                param.requires_grad_(True)
        return features

    def prior_outputs(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """'b n', 'b n' -> 'b k': each member's random prior function of the tokens (before `prior_scale`).

        A randomised prior (Osband et al. 2018) must be a fixed function of the input, so it reads
        neither the backbone nor its (trained) features: a frozen random embedding of every attended
        token, summed and divided by sqrt(token count) (so its spread does not shrink with length),
        then each member's frozen random head.
        """
        if self.prior_embedding is None:
            raise ValueError("prior_outputs: this ensemble has no priors (prior_scale=0)")
        mask = rearrange(attention_mask, "b n -> b n 1").to(self.prior_embedding.dtype)
        summed = reduce(self.prior_embedding[input_ids] * mask, "b n d -> b d", "sum")
        pooled = summed / reduce(mask, "b n 1 -> b 1", "sum").clamp(min=1.0).sqrt()
        return torch.stack([prior(pooled) for prior in self.priors], dim=1)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """'b n', 'b n' -> 'b k 2': each member's raw reward mean and variance (never standardised)."""
        features = self.member_features(input_ids, attention_mask)
        outs = torch.stack([head(f) for head, f in zip(self.heads, features)], dim=1)  # 'b k' or 'b k 2'
        if self.head == "scalar":
            means, variances = outs, torch.zeros_like(outs)
        else:
            means, variances = outs[..., 0], outs[..., 1].clamp(-10.0, 10.0).exp()
        if self.prior_scale:
            means = means + self.prior_scale * self.prior_outputs(input_ids, attention_mask).to(means.dtype)
        self.aux_loss = None
        if self.bank is not None and self.training:
            stacked = torch.stack(features, dim=1)  # 'b k d'
            self.aux_loss = self.consistency_weight * self.bank.consistency(stacked, means)
            self.bank.push(stacked, means)
        return torch.stack([means, variances], dim=-1)

    def training_loss(self, forward, batch: dict, config) -> tuple[Tensor, dict[str, Tensor]]:
        """All members in one step: each member's (bootstrap-weighted) probit preference loss, plus the
        feature-bank penalty where set and reward centring of the aggregated rewards; evaluation
        reads the aggregated 'b 2' rewards."""
        outputs = forward(**{k: batch[k] for k in MODEL_INPUTS if k in batch})
        chosen, rejected = rearrange(outputs, "(two b) ... -> two b ...", two=2)
        loss = self.pair_loss(chosen, rejected, batch.get("member_weights"), config.label_smoothing)
        if self.aux_loss is not None:
            loss = loss + self.aux_loss
        chosen, rejected = self.reduce(chosen), self.reduce(rejected)
        if config.center_rewards_coefficient:
            loss = loss + config.center_rewards_coefficient * reward_centering_loss(chosen, rejected)
        return loss, {"rewards": torch.stack([chosen, rejected], dim=-1)}

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
        shift, scale = self.member_shift.float().cpu(), self.member_scale.float().cpu()
        out = standardize(out[..., 0], out[..., 1], shift, scale)
        means, variances = out[..., 0], out[..., 1]
        epistemic, aleatoric = means.var(dim=-1, unbiased=False), variances.mean(dim=-1)
        total = epistemic + aleatoric
        rewards = aggregate(means, total, self.aggregation, self.uwo_lambda, self.lcb_k)
        extras = {"member_means": means, "member_vars": variances, "epistemic_var": epistemic,
                  "aleatoric_var": aleatoric}
        return RewardOutput(rewards=rewards, uncertainty=total.sqrt(), extras=extras)

    def standardize_members(self, prompts: Sequence, responses: Sequence, *,
                            batch_size: int | None = None) -> tuple[Tensor, Tensor]:
        """Fit each member's shift and scale on reference inputs; return them ('k' each).

        Makes the members commensurable before they are combined: worst case (WCO) and
        mean - lambda x variance (UWO) of Coste et al. 2023, the LCB and the epistemic variance all
        compare member rewards that Bradley-Terry fixes only up to a per-member shift. The shift and
        scale are the mean and (population) std of each member's raw reward over the reference
        inputs, e.g. the responses, chosen and rejected, of validation pairs; scoring then reports
        (m - shift) / scale (see the class docstring for why 0/1). Fitting starts from the identity;
        `forward` and the training loss never apply it, so training is unaffected, but refit after
        training further (the members moved) and `calibrate` after fitting. Saved with the
        checkpoint (`member_shift`, `member_scale` and `reference_size`).

        Raises:
            ValueError: fewer than 2 reference inputs, or a member that gives them all the same
                reward (names the member); the previous standardisation is then kept.
        """
        if len(prompts) < MIN_REFERENCE:
            raise ValueError(f"standardize_members: {len(prompts)} reference input(s); a member's spread "
                             f"needs at least {MIN_REFERENCE}")
        previous = (self.member_shift.clone(), self.member_scale.clone(), self.reference_size)
        self._set_standardization(torch.zeros(self.n_members), torch.ones(self.n_members), 0)
        try:
            out = self.score(prompts, responses, batch_size=batch_size, normalize=False)
            means = out.extras["member_means"].clone().double()  # raw: the identity is set
            shift, scale = means.mean(dim=0), means.std(dim=0, unbiased=False)
            flat = (scale <= 1e-6 * (1.0 + shift.abs())).nonzero().flatten().tolist()
            if flat:
                k = flat[0]
                raise ValueError(f"standardize_members: member {k} gives all {len(prompts)} reference inputs "
                                 f"the same reward ({shift[k].item():.6g}, std {scale[k].item():.3g}); "
                                 "it cannot be standardised on them")
        except BaseException:
            self._set_standardization(*previous)
            raise
        self._set_standardization(shift.float(), scale.float(), len(prompts))
        return self.member_shift.clone(), self.member_scale.clone()

    def _set_standardization(self, shift: Tensor, scale: Tensor, reference_size: int) -> None:
        """Set the buffers; they are in the state dict (saved, and expected on load) only once fitted,
        so a checkpoint written without them loads as the identity."""
        with torch.no_grad():
            self.member_shift.copy_(shift)
            self.member_scale.copy_(scale)
        self.reference_size = int(reference_size)
        for name in ("member_shift", "member_scale"):
            self.register_buffer(name, getattr(self, name), persistent=self.reference_size > 0)

    def preference_logits(self, out_a: RewardOutput, out_b: RewardOutput) -> Tensor:
        """'b' log-odds of the members' average probit-integrated P(a > b) (see `ensemble_preference_logits`)."""
        a, b = out_a.extras, out_b.extras
        return ensemble_preference_logits(a["member_means"], a["member_vars"], b["member_means"], b["member_vars"])

    def config_dict(self) -> dict:
        config = {
            "backbone": self.backbone.spec(), "n_members": self.n_members, "form": self.form,
            "member_backbones": self.member_backbones, "head": self.head, "head_hidden": self.head_hidden,
            "dropout": self.dropout, "aggregation": self.aggregation, "uwo_lambda": self.uwo_lambda,
            "lcb_k": self.lcb_k, "prior_scale": self.prior_scale, "bootstrap": self.bootstrap,
            "consistency_weight": self.consistency_weight, "bank_size": self.bank_size,
            "consistency_threshold": self.consistency_threshold, "seed": self.seed, "batch_size": self.batch_size,
            "reference_size": self.reference_size,
        }
        if self.form == "independent":
            config["member_specs"] = [member.spec() for member in self.backbones]
        return config

    @staticmethod
    def _member_dir(directory: Path, index: int) -> Path:
        return directory / (BACKBONE_DIR if index == 0 else f"{BACKBONE_DIR}_{index}")

    def _save_extra(self, directory: Path) -> None:
        for i, member in enumerate(self.backbones):
            member.save_architecture(self._member_dir(directory, i))

    @classmethod
    def _from_config(cls, config: dict, directory: Path) -> "EnsembleRewardModel":
        kwargs = {k: v for k, v in config.items() if k not in ("model_type", "backbone", "member_specs")}
        specs = config.get("member_specs") or [config["backbone"]]
        members = [Backbone.from_architecture(cls._member_dir(directory, i), spec) for i, spec in enumerate(specs)]
        # Independent members come from the saved architectures (never reloaded by name:
        # `member_backbones` is kept as a record only); the other forms rebuild from one backbone.
        return cls(members[0], members=members if config.get("form") == "independent" else None, **kwargs)

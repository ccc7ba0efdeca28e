"""Hybrid reward: alpha * rule + beta * model, both normalised before mixing.

r = alpha * N_rule(r_rule) + beta * N_model(r_model), with alpha, beta >= 0 and alpha + beta = 1.
The two parts live on different scales (a rule sum in [0, k], an RM's unbounded logit), so each
is standardised first: per call by default (`BatchStandardize`), or with statistics measured once
on a reference set (`fit_normalizers`), which makes a reward independent of what else is scored
with it. Legend: b batch.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import torch

from nexus.base import RewardModel
from nexus.outputs import RewardOutput
from nexus.models.rules import RulesRewardModel
from nexus.normalize import BatchStandardize, FixedStandardize, Normalizer, as_normalizer

MODEL_DIR = "model"


def check_mix(alpha: float, beta: float | None) -> tuple[float, float]:
    """(alpha, beta) with beta defaulting to 1 - alpha; both finite, >= 0 and summing to 1."""
    if beta is None and isinstance(alpha, (int, float)) and not isinstance(alpha, bool):
        beta = 1.0 - alpha
    for name, value in (("alpha", alpha), ("beta", beta)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} = {value!r}: must be a finite number >= 0")
    if abs(alpha + beta - 1.0) > 1e-6:
        raise ValueError(f"alpha + beta must be 1, got alpha={alpha} + beta={beta} = {alpha + beta}")
    return float(alpha), float(beta)


class HybridRewardModel(RewardModel):
    """`alpha * rule + beta * model` behind `score`.

    `score(prompts, responses, references=...)` returns `rewards: 'b'`, `uncertainty: 'b'`
    (beta times the model's, scaled by its normaliser) when the model has one, and in `extras`
    'rule' and 'model' (the normalised parts 'b'), 'rule_raw' and 'model_raw', and each rule
    function's value as 'rule/<name>'. `references` go to the rules part only. The parts are
    scored raw: normalisers set on the inner models themselves are not applied, the hybrid's are.

    The inner model is saved as a checkpoint of its own in `model/`; it is kept out of this
    module's state_dict so its weights are stored once.

    Args:
        rules: a `RulesRewardModel` or its constructor arguments.
        model: any nexus reward model, or the path of a checkpoint (`nexus.load`).
        alpha: weight of the rule part; beta: weight of the model part (default 1 - alpha).
        rule_normalizer, model_normalizer: `nexus.normalize` normalisers (or their configs)
            applied to each part before mixing; default `BatchStandardize()`.
        batch_size: the inner model's batch size for `score` when none is given.
    """

    reads_conversations = True  # its parts take them as they can (a neural part renders them, rules read text)
    model_type = "hybrid"
    input_columns = ("references",)
    saved_entries = (MODEL_DIR,)
    data_format = "none"

    def __init__(self, rules: RulesRewardModel | Mapping, model: RewardModel | str | os.PathLike,
                 alpha: float = 0.5, beta: float | None = None, rule_normalizer: Normalizer | Mapping | None = None,
                 model_normalizer: Normalizer | Mapping | None = None, batch_size: int = 64):
        super().__init__(batch_size=batch_size)
        self.alpha, self.beta = check_mix(alpha, beta)
        self.rules = rules if isinstance(rules, RulesRewardModel) else RulesRewardModel(**dict(rules))
        if isinstance(model, (str, os.PathLike)):
            import nexus

            model = nexus.load(model)
        if not isinstance(model, RewardModel):
            raise ValueError(f"model must be a nexus RewardModel or a checkpoint path, got {type(model).__name__}")
        object.__setattr__(self, "model", model)  # not a submodule: see the class docstring
        self.rule_normalizer = as_normalizer(rule_normalizer, "rule_normalizer") or BatchStandardize()
        self.model_normalizer = as_normalizer(model_normalizer, "model_normalizer") or BatchStandardize()

    # The inner model is not a registered submodule, so device moves and train/eval reach it here.
    def _apply(self, fn, *args, **kwargs):
        self.model._apply(fn, *args, **kwargs)
        return super()._apply(fn, *args, **kwargs)

    def train(self, mode: bool = True) -> "HybridRewardModel":
        super().train(mode)
        self.model.train(mode)
        return self

    @property
    def device(self) -> torch.device:
        return self.model.device

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, model={type(self.model).__name__}"

    def data_collator(self, seed: int = 0):
        raise ValueError("a hybrid model is not trained itself: train its inner model, then wrap it")

    @property
    def scores_independently(self) -> bool:
        """Only with per-input normalisers of its parts (the default `BatchStandardize` uses the call's
        own rewards; `fit_normalizers` makes them fixed)."""
        return (super().scores_independently and self.rule_normalizer.per_input
                and self.model_normalizer.per_input)

    def input_lengths(self, prompts: Sequence, responses: Sequence) -> list[int]:
        return self.model.input_lengths(prompts, responses)

    @property
    def max_input_length(self) -> int | None:
        return self.model.max_input_length

    @property
    def length_unit(self) -> str:
        return self.model.length_unit

    def fit_normalizers(self, prompts: Sequence[str], responses: Sequence[str],
                        references: Sequence | None = None) -> "HybridRewardModel":
        """Standardise both parts with statistics measured on this reference set (`FixedStandardize`)."""
        self.rule_normalizer = FixedStandardize.measure(self.rules, prompts, responses, references=references)
        self.model_normalizer = FixedStandardize.measure(self.model, prompts, responses)
        return self

    def _check_columns(self, columns: dict, n: int) -> dict:
        self.rules.check_references(columns.get("references"), n)  # errors before any scoring
        return columns

    def _score_inputs(self, prompts: Sequence[str], responses: Sequence, columns: dict, *,
                      batch_size: int | None, max_tokens: int | None, share_prompts: bool,
                      progress: bool, max_padding: float | None = None) -> RewardOutput:
        """Rewards 'b' = alpha * N_rule(rule) + beta * N_model(model), in input order, from the parts'
        own `score` (references go to the rules part, the batching options to the model part)."""
        rule_out = self.rules.score(prompts, responses, references=columns.get("references"), progress=progress,
                                    normalize=False)
        model_out = self.model.score(prompts, responses, batch_size=batch_size or self.batch_size,
                                     max_tokens=max_tokens, max_padding=max_padding, share_prompts=share_prompts,
                                     progress=progress, normalize=False)
        rule_part, model_part = self.rule_normalizer.apply(rule_out), self.model_normalizer.apply(model_out)
        rewards = self.alpha * rule_part.rewards.float() + self.beta * model_part.rewards.float()
        uncertainty = None if model_part.uncertainty is None else self.beta * model_part.uncertainty.float()
        extras = {"rule": rule_part.rewards, "model": model_part.rewards,
                  "rule_raw": rule_out.rewards, "model_raw": model_out.rewards,
                  **{f"rule/{label}": rule_out.extras[label] for label in self.rules.labels}}
        return RewardOutput(rewards, uncertainty, extras=extras)

    def _score_batch(self, prompts: list[str], responses: list[str], references=None) -> RewardOutput:
        return self.score(prompts, responses, references=references, normalize=False)

    def config_dict(self) -> dict:
        return {"alpha": self.alpha, "beta": self.beta, "rules": self.rules.config_dict(),
                "rule_normalizer": self.rule_normalizer.to_config(),
                "model_normalizer": self.model_normalizer.to_config(), "batch_size": self.batch_size}

    def _save_extra(self, directory: Path) -> None:
        self.model.save_pretrained(directory / MODEL_DIR)

    @classmethod
    def _from_config(cls, config: dict, directory: Path) -> "HybridRewardModel":
        return cls(RulesRewardModel(**config["rules"]), directory / MODEL_DIR, alpha=config["alpha"],
                   beta=config["beta"], rule_normalizer=config["rule_normalizer"],
                   model_normalizer=config["model_normalizer"], batch_size=config["batch_size"])

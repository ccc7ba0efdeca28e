"""Distilling a rule-based reward into a neural RM.

A `RulesRewardModel` labels texts; the labels become Bradley-Terry preference pairs (two texts
whose rule rewards differ by more than a margin, the higher one chosen) or regression targets
(the rule reward scaled to [0, 1] by the composite's documented range, fitted by an outcome RM's
soft-label cross-entropy); a scalar, ensemble or outcome RM trains on them with `RewardTrainer`;
the student is judged by its Spearman rank correlation with the rule reward on held-out texts.
Rank correlation is the right yardstick: a Bradley-Terry student learns the rule reward only up
to a monotone map (pairs carry no scale), so a linear fit would be unfair to it.
The texts come from a task (`nexus.tasks.arithmetic.texts.arithmetic_texts` for the built-in one).
Legend: b texts.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from nexus import metrics
from nexus.base import RewardModel
from nexus.inputs import validate_inputs
from nexus.data.formats import OutcomeExample, PairwiseExample
from nexus.models.rules import RulesRewardModel

MIN_TRAIN_TEXTS = 10
TARGETS = ("pairs", "regression")


@dataclass
class LabelledTexts:
    """Texts with their rule rewards.

    Attributes:
        prompts, responses: 'b' strings.
        rewards: 'b' float64 composite rule rewards (raw: no normaliser).
        references: 'b' what the rules read (None if no rule reads one).
    """

    prompts: list[str]
    responses: list[str]
    rewards: np.ndarray
    references: list | None = None

    def __len__(self) -> int:
        return len(self.prompts)


def label_texts(rules: RulesRewardModel, prompts: Sequence[str], responses: Sequence[str],
                references: Sequence | None = None) -> LabelledTexts:
    """Score texts with the composite rule reward (raw, `normalize=False`)."""
    validate_inputs(prompts, responses)
    rewards = rules.score(prompts, responses, references=references, normalize=False).rewards
    return LabelledTexts(list(prompts), list(responses), rewards.double().numpy(),
                         None if references is None else list(references))


def rule_range(rules: RulesRewardModel) -> tuple[float, float]:
    """(low, high) of the composite: sum_i w_i [low_i, high_i] from the rules' documented ranges."""
    low = sum(w * rule.low for w, (rule, _) in zip(rules.weights, rules.specs))
    high = sum(w * rule.high for w, (rule, _) in zip(rules.weights, rules.specs))
    return float(low), float(high)


def _check_margin(margin: float) -> None:
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
        raise ValueError(f"margin = {margin!r}: expected a number >= 0")


def preference_pairs(texts: LabelledTexts, margin: float = 0.0, max_pairs: int | None = None,
                     seed: int = 0) -> list[PairwiseExample]:
    """Pairs (i, j), i < j, of texts with one prompt whose rule rewards differ by more than `margin`;
    the higher one is chosen.

    Only texts sharing a prompt are paired: a preference pair has one prompt (the usual RM
    comparison, two answers to one question). Pairs come in (i, j) order; `max_pairs` keeps a
    seeded random subset, still in that order. `extra` records the chosen text's index `i`, the
    rejected one's `j`, and both rule rewards.

    Raises:
        ValueError: a negative margin, or no pair differs by more than it.
    """
    _check_margin(margin)
    by_prompt: dict[str, list[int]] = {}
    for i, prompt in enumerate(texts.prompts):
        by_prompt.setdefault(prompt, []).append(i)
    index = sorted((i, j) for group in by_prompt.values() for a, i in enumerate(group) for j in group[a + 1:]
                   if abs(texts.rewards[i] - texts.rewards[j]) > margin)
    if not index:
        raise ValueError(f"no two texts of one prompt have rule rewards that differ by more than margin={margin}: "
                         "lower the margin or give more varied texts")
    if max_pairs is not None and len(index) > max_pairs:
        keep = sorted(random.Random(seed).sample(range(len(index)), max_pairs))
        index = [index[k] for k in keep]
    pairs = []
    for i, j in index:
        hi, lo = (i, j) if texts.rewards[i] > texts.rewards[j] else (j, i)
        pairs.append(PairwiseExample(texts.prompts[i], texts.responses[hi], texts.responses[lo], extra={
            "i": hi, "j": lo, "rule_chosen": float(texts.rewards[hi]), "rule_rejected": float(texts.rewards[lo])}))
    return pairs


def regression_targets(texts: LabelledTexts, low: float, high: float) -> list[OutcomeExample]:
    """Outcome examples whose soft label is the rule reward scaled to [0, 1]: (r - low) / (high - low).

    Binary cross-entropy with a soft label y is minimised at logit = log(y / (1 - y)), so an outcome
    RM trained on these regresses the (scaled) rule reward through a logit link.

    Raises:
        ValueError: high <= low, or a reward outside [low, high] (names the index).
    """
    if not high > low:
        raise ValueError(f"the reward range must have high > low, got low={low}, high={high}")
    outside = np.flatnonzero((texts.rewards < low - 1e-9) | (texts.rewards > high + 1e-9))
    if outside.size:
        i = int(outside[0])
        raise ValueError(f"rewards[{i}] = {texts.rewards[i]} is outside the range [{low}, {high}]")
    labels = np.clip((texts.rewards - low) / (high - low), 0.0, 1.0)
    return [OutcomeExample(p, r, float(y), extra={"rule_reward": float(x)})
            for p, r, y, x in zip(texts.prompts, texts.responses, labels, texts.rewards)]


def training_examples(student: RewardModel, rules: RulesRewardModel, train: LabelledTexts, targets: str = "pairs",
                      margin: float = 0.0, max_pairs: int | None = None, seed: int = 0) -> list:
    """What `student` trains on: `preference_pairs` (targets="pairs", a pairwise student) or
    `regression_targets` over `rule_range(rules)` (targets="regression", an outcome student).

    Raises:
        ValueError: fewer than `MIN_TRAIN_TEXTS` texts, an unknown `targets`, or a student whose
            `data_format` does not fit the targets.
    """
    if len(train) < MIN_TRAIN_TEXTS:
        raise ValueError(f"distillation needs at least {MIN_TRAIN_TEXTS} training texts, got {len(train)}")
    if targets not in TARGETS:
        raise ValueError(f"targets={targets!r}: expected one of {TARGETS}")
    wanted = "pairwise" if targets == "pairs" else "outcome"
    if student.data_format != wanted:
        raise ValueError(f"targets={targets!r} needs a student with data_format {wanted!r}; "
                         f"{type(student).__name__} trains on {student.data_format!r}")
    if targets == "pairs":
        return preference_pairs(train, margin, max_pairs=max_pairs, seed=seed)
    return regression_targets(train, *rule_range(rules))


def evaluate_distillation(student: RewardModel, held_out: LabelledTexts, margin: float = 0.0) -> dict:
    """How well the student ranks held-out texts as the rules do.

    Returns:
        {"spearman", "kendall"}: rank correlations of the student's rewards with the rule rewards
        over all held-out texts (`nexus.metrics`, i.e. scipy); "pair_accuracy": the fraction of
        held-out `preference_pairs` (same margin) the student orders as the rules do (ties 1/2);
        "n_texts", "n_pairs".
    """
    if len(held_out) < 2:
        raise ValueError(f"held-out evaluation needs at least 2 texts, got {len(held_out)}")
    student_rewards = student.score(held_out.prompts, held_out.responses, normalize=False).rewards.double().numpy()
    report = {"n_texts": len(held_out), "spearman": metrics.spearman(student_rewards, held_out.rewards),
              "kendall": metrics.kendall(student_rewards, held_out.rewards)}
    try:
        pairs = preference_pairs(held_out, margin)
    except ValueError:
        pairs = []
    chosen = np.array([student_rewards[p.extra["i"]] for p in pairs])
    rejected = np.array([student_rewards[p.extra["j"]] for p in pairs])
    report["pair_accuracy"] = metrics.pairwise_accuracy(chosen, rejected) if pairs else float("nan")
    report["n_pairs"] = len(pairs)
    return report


def distill(student: RewardModel, rules: RulesRewardModel, train: LabelledTexts, held_out: LabelledTexts,
            args, targets: str = "pairs", margin: float = 0.0, max_pairs: int | None = None) -> dict:
    """Train `student` on the rule reward of `train` and evaluate it on `held_out`.

    Args:
        args: `nexus.training.RewardTrainingArguments` for the student's training.
        targets: "pairs" (Bradley-Terry on `preference_pairs`) or "regression" (an outcome student
            on `regression_targets`).

    Returns:
        `evaluate_distillation` before ("spearman_before") and after training, plus "n_examples"
        (pairs or texts trained on) and "train_seconds".
    """
    from nexus.training import RewardTrainer

    examples = training_examples(student, rules, train, targets, margin, max_pairs, args.seed)
    before = evaluate_distillation(student, held_out, margin)["spearman"]
    start = time.perf_counter()
    RewardTrainer(model=student, args=args, train_dataset=examples).train()
    seconds = time.perf_counter() - start
    student.eval()
    report = evaluate_distillation(student, held_out, margin)
    return {**report, "spearman_before": before, "n_examples": len(examples), "train_seconds": seconds}

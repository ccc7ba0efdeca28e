"""Evaluating any `RewardModel` on preference pairs through its public `score()`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import special

from nexus import metrics
from nexus.base import RewardModel
from nexus.outputs import RewardOutput
from nexus.data.formats import PairwiseExample


@dataclass
class PairwiseScores:
    """What one scoring pass over preference pairs gives: both sides' outputs, the model's
    uncalibrated log-odds that chosen is preferred ('b'), its temperature and the seconds taken."""

    chosen: RewardOutput
    rejected: RewardOutput
    logits: np.ndarray
    temperature: float
    seconds: float

    @property
    def p_chosen(self) -> np.ndarray:
        """'b' P(chosen preferred) as `compare` gives it (temperature applied)."""
        return special.expit(self.logits / self.temperature)

    @property
    def rewards(self) -> tuple[np.ndarray, np.ndarray]:
        """'b' rewards of chosen and of rejected, as `score` returned them."""
        return self.chosen.rewards.double().numpy(), self.rejected.rewards.double().numpy()


def score_pairs(rm: RewardModel, pairs: Sequence[PairwiseExample]) -> PairwiseScores:
    """Score chosen and rejected of every pair in one `score` call (one length-sorted pass)."""
    if not pairs:
        raise ValueError("no pairs to evaluate")
    prompts = [p.prompt for p in pairs]
    responses = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    start = time.perf_counter()
    raw = rm.score(prompts + prompts, responses, progress=len(responses) > 2000, normalize=False)
    # The rewards as `score` returns them (normalised over this one call where a normaliser is
    # set); the preference log-odds from the raw rewards, as `compare` and `calibrate` read them,
    # so a fitted temperature divides the scale it was fitted on.
    out = raw if rm.normalizer is None else rm.normalizer.apply(raw)
    seconds = time.perf_counter() - start
    n = len(pairs)
    first, second = slice(0, n), slice(n, 2 * n)
    logits = rm.preference_logits(raw.select(first), raw.select(second)).double().numpy()
    return PairwiseScores(out.select(first), out.select(second), logits, float(rm.temperature), seconds)


def evaluate_pairwise(rm: RewardModel, pairs: Sequence[PairwiseExample], n_bins: int = 10) -> dict[str, float]:
    """Accuracy, calibration (ECE both binnings, Brier, NLL) and scoring speed on `pairs`."""
    return pairwise_report(score_pairs(rm, pairs), n_bins=n_bins)


def pairwise_report(scores: PairwiseScores, n_bins: int = 10) -> dict[str, float]:
    """Metrics of one `score_pairs` pass.

    Accuracy is of the rewards `score` returns (what a best-of-N or RL user ranks by).
    Calibration is of the model's own P(chosen preferred) (`compare`: sigmoid((r_c - r_r) / T)
    for Bradley-Terry RMs, the integrated member probability for ensembles), read in both
    orientations (see `metrics.both_orientations`); `ece_uncalibrated` is the ECE at T = 1.
    """
    chosen, rejected = scores.rewards
    probs, labels = metrics.both_orientations(scores.p_chosen)
    raw = metrics.both_orientations(special.expit(scores.logits))
    return {
        "n_pairs": len(chosen),
        "accuracy": metrics.pairwise_accuracy(chosen, rejected),
        "ece": metrics.expected_calibration_error(probs, labels, n_bins, "uniform"),
        "ece_equal_mass": metrics.expected_calibration_error(probs, labels, n_bins, "quantile"),
        "ece_uncalibrated": metrics.expected_calibration_error(*raw, n_bins, "uniform"),
        "temperature": scores.temperature,
        "brier": metrics.brier_score(probs, labels),
        "nll": metrics.negative_log_likelihood(probs, labels),
        "mean_margin": metrics.mean_margin(chosen, rejected),
        "score_pairs_per_s": len(chosen) / scores.seconds,
    }

"""Evaluating any `RewardModel` on preference pairs through its public `score()`."""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from nexus import metrics
from nexus.base import RewardModel
from nexus.data.formats import PairwiseExample


def pairwise_rewards(rm: RewardModel, pairs: Sequence[PairwiseExample]) -> tuple[np.ndarray, np.ndarray, float]:
    """Rewards of chosen and rejected responses ('b' each) and the seconds scoring took."""
    if not pairs:
        raise ValueError("no pairs to evaluate")
    prompts = [p.prompt for p in pairs]
    start = time.perf_counter()
    responses = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    out = rm.score(prompts + prompts, responses, progress=len(responses) > 2000)
    seconds = time.perf_counter() - start
    rewards = out.rewards.double().numpy()
    return rewards[: len(pairs)], rewards[len(pairs):], seconds


def evaluate_pairwise(rm: RewardModel, pairs: Sequence[PairwiseExample], n_bins: int = 10) -> dict[str, float]:
    """Accuracy, calibration (ECE both binnings, Brier, NLL) and scoring speed on `pairs`."""
    return pairwise_report(*pairwise_rewards(rm, pairs), n_bins=n_bins)


def pairwise_report(chosen: np.ndarray, rejected: np.ndarray, seconds: float, n_bins: int = 10) -> dict[str, float]:
    """Metrics of 'b' chosen and rejected rewards scored in `seconds`.

    Calibration is of the Bradley-Terry probability sigmoid(r_c - r_r), read in both
    orientations (see `metrics.preference_probabilities`).
    """
    probs, labels = metrics.preference_probabilities(chosen, rejected)
    return {
        "n_pairs": len(chosen),
        "accuracy": metrics.pairwise_accuracy(chosen, rejected),
        "ece": metrics.expected_calibration_error(probs, labels, n_bins, "uniform"),
        "ece_equal_mass": metrics.expected_calibration_error(probs, labels, n_bins, "quantile"),
        "brier": metrics.brier_score(probs, labels),
        "nll": metrics.negative_log_likelihood(probs, labels),
        "mean_margin": metrics.mean_margin(chosen, rejected),
        "score_pairs_per_s": len(chosen) / seconds,
    }

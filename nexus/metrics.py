"""Evaluation metrics for reward models: small pure functions returning python floats.

Shape legend (einops letters):
    b   batch (preference pairs, or scored samples)
    m   bins of a calibration histogram (non-empty bins only)

Inputs may be torch tensors, numpy arrays or lists; they are converted to float64 numpy
arrays and validated where they enter (1-D, non-empty, finite, equal lengths, and
probabilities within [0, 1]), with the offending index in the error message.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy import special, stats

__all__ = [
    "pairwise_accuracy",
    "mean_margin",
    "reward_stats",
    "expected_calibration_error",
    "reliability_curve",
    "preference_probabilities",
    "both_orientations",
    "preference_ece",
    "brier_score",
    "negative_log_likelihood",
    "auroc",
    "risk_coverage_curve",
    "area_under_risk_coverage",
    "bootstrap_interval",
    "first_error_index",
    "processbench",
    "spearman",
    "kendall",
    "position_consistency",
]

STRATEGIES = ("uniform", "quantile")


def _as_array(x: Any, name: str) -> np.ndarray:
    """Converts ``x`` to a 1-D float64 array; raises ValueError if empty or not finite."""
    if hasattr(x, "detach"):  # torch tensor, without importing torch; .double() handles bf16
        x = x.detach().cpu().double().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D 'b', got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{name}[{bad[0]}] = {float(arr[bad[0]])!r} is not finite")
    return arr


def _as_pair(x: Any, y: Any, name_x: str, name_y: str) -> tuple[np.ndarray, np.ndarray]:
    """Converts two inputs with ``_as_array``; raises ValueError if their lengths differ."""
    a, b = _as_array(x, name_x), _as_array(y, name_y)
    if a.size != b.size:
        raise ValueError(f"{name_x} has length {a.size} but {name_y} has length {b.size}")
    return a, b


def _check_unit_interval(arr: np.ndarray, name: str) -> None:
    """Raises ValueError naming the first element of ``arr`` outside [0, 1]."""
    bad = np.flatnonzero((arr < 0) | (arr > 1))
    if bad.size:
        raise ValueError(f"{name}[{bad[0]}] = {float(arr[bad[0]])!r} is outside [0, 1]")


def _probs_labels(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``probs: 'b'`` and (possibly soft) ``labels: 'b'``, both within [0, 1]."""
    p, y = _as_pair(probs, labels, "probs", "labels")
    _check_unit_interval(p, "probs")
    _check_unit_interval(y, "labels")
    return p, y


def pairwise_accuracy(chosen: Any, rejected: Any) -> float:
    """Fraction of pairs where the chosen reward is higher; a tie counts one half.

    The standard RM accuracy (Ouyang et al. 2022; Lambert et al. 2024, RewardBench).
    Ties at 0.5 keep a constant reward model at chance rather than at 0 or 1.

    Args:
        chosen: 'b' rewards of the preferred responses.
        rejected: 'b' rewards of the dispreferred responses.
    """
    c, r = _as_pair(chosen, rejected, "chosen", "rejected")
    return float(np.mean((c > r) + 0.5 * (c == r)))


def mean_margin(chosen: Any, rejected: Any) -> float:
    """Mean reward gap ``mean(chosen - rejected)`` (as logged by TRL's RewardTrainer).

    Args:
        chosen: 'b' rewards of the preferred responses.
        rejected: 'b' rewards of the dispreferred responses.
    """
    c, r = _as_pair(chosen, rejected, "chosen", "rejected")
    return float(np.mean(c - r))


def reward_stats(rewards: Any) -> dict[str, float]:
    """Summary of a reward distribution: mean, population std, min, max, p05, p50, p95.

    Percentiles use numpy's default linear interpolation (Hyndman & Fan 1996, type 7).

    Args:
        rewards: 'b' rewards.

    Returns:
        Dict with keys ``mean, std, min, max, p05, p50, p95``.
    """
    x = _as_array(rewards, "rewards")
    p05, p50, p95 = np.percentile(x, [5, 50, 95])
    return {
        "mean": float(x.mean()),
        "std": float(x.std(ddof=0)),
        "min": float(x.min()),
        "max": float(x.max()),
        "p05": float(p05),
        "p50": float(p50),
        "p95": float(p95),
    }


def _bin_indices(p: np.ndarray, n_bins: int, strategy: str) -> list[np.ndarray]:
    """Splits the indices of ``p`` into non-empty calibration bins, in increasing ``p``.

    "uniform": equal-width bins [k/n_bins, (k+1)/n_bins) on [0, 1]; p == 1.0 goes in the
    last bin (edges as sklearn's ``calibration_curve``). "quantile": equal-mass bins from
    ``np.array_split`` of the sorted indices, so every sample lands in exactly one bin
    (tied probabilities may straddle two bins). Empty bins are dropped.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, got {n_bins!r}")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        which = np.searchsorted(edges[1:-1], p, side="right")
        bins = [np.flatnonzero(which == k) for k in range(n_bins)]
    elif strategy == "quantile":
        bins = np.array_split(np.argsort(p, kind="stable"), n_bins)
    else:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    return [idx for idx in bins if idx.size]


def reliability_curve(
    probs: Any, labels: Any, n_bins: int = 10, strategy: str = "uniform"
) -> dict[str, np.ndarray]:
    """Per-bin mean predicted probability, mean label and count (a reliability diagram).

    DeGroot & Fienberg 1983; Niculescu-Mizil & Caruana 2005. Bins as in
    ``expected_calibration_error``; empty bins are left out.

    Args:
        probs: 'b' predicted P(label = 1).
        labels: 'b' labels in [0, 1] (hard or soft).
        n_bins: number of bins.
        strategy: "uniform" (equal width on [0, 1]) or "quantile" (equal mass).

    Returns:
        Dict of 'm' arrays: ``mean_prob`` (float), ``mean_label`` (float), ``count`` (int).
    """
    p, y = _probs_labels(probs, labels)
    bins = _bin_indices(p, n_bins, strategy)
    return {
        "mean_prob": np.array([p[idx].mean() for idx in bins]),
        "mean_label": np.array([y[idx].mean() for idx in bins]),
        "count": np.array([idx.size for idx in bins], dtype=np.int64),
    }


def expected_calibration_error(
    probs: Any, labels: Any, n_bins: int = 10, strategy: str = "uniform"
) -> float:
    """Binary expected calibration error over P(label = 1).

    ``sum_m (n_m / n) * |mean(labels in m) - mean(probs in m)|`` over non-empty bins m
    (Naeini et al. 2015; Guo et al. 2017 eq. 3). Binning is on the predicted probability
    itself, not on max(p, 1 - p) as in multi-class confidence ECE. Arguments and bins as in
    `reliability_curve`, whose curve this weights by bin counts.

    Raises:
        ValueError: on bad inputs (see module docstring), n_bins < 1 or unknown strategy.
    """
    curve = reliability_curve(probs, labels, n_bins, strategy)
    weights = curve["count"] / curve["count"].sum()
    return float(np.sum(weights * np.abs(curve["mean_label"] - curve["mean_prob"])))


def preference_probabilities(chosen: Any, rejected: Any) -> tuple[np.ndarray, np.ndarray]:
    """Bradley-Terry P(first preferred) for every pair in both orientations.

    ``p = sigmoid(chosen - rejected)`` (Bradley & Terry 1952). A pairwise dataset lists the
    preferred response first, so the label is 1 in that orientation only; ECE on it alone
    would reward a model that always says p = 1. Adding the swapped pair (prob 1 - p,
    label 0) makes the label set balanced, and calibration is judged on both sides.

    Args:
        chosen: 'b' rewards of the preferred responses.
        rejected: 'b' rewards of the dispreferred responses.

    Returns:
        ``(probs, labels)``, each '(2 b)': ``concat(p, 1 - p)`` and ``concat(ones, zeros)``.
    """
    c, r = _as_pair(chosen, rejected, "chosen", "rejected")
    # expit(r - c) rather than 1 - expit(c - r): no cancellation when p is close to 1.
    return np.concatenate([special.expit(c - r), special.expit(r - c)]), np.repeat([1.0, 0.0], c.size)


def both_orientations(p_chosen: Any) -> tuple[np.ndarray, np.ndarray]:
    """'b' P(chosen preferred) from any model -> '(2 b)' ``concat(p, 1 - p)``, ``concat(ones, zeros)``,
    as `preference_probabilities` does for Bradley-Terry rewards."""
    p = _as_array(p_chosen, "p_chosen")
    _check_unit_interval(p, "p_chosen")
    return np.concatenate([p, 1.0 - p]), np.repeat([1.0, 0.0], p.size)


def preference_ece(
    chosen: Any, rejected: Any, n_bins: int = 10, strategy: str = "uniform"
) -> float:
    """ECE of Bradley-Terry preference probabilities, both orientations (see above).

    Args:
        chosen: 'b' rewards of the preferred responses.
        rejected: 'b' rewards of the dispreferred responses.
        n_bins: number of bins.
        strategy: "uniform" or "quantile".
    """
    probs, labels = preference_probabilities(chosen, rejected)
    return expected_calibration_error(probs, labels, n_bins, strategy)


def brier_score(probs: Any, labels: Any) -> float:
    """Binary Brier score ``mean((probs - labels)**2)`` (Brier 1950).

    Args:
        probs: 'b' predicted P(label = 1).
        labels: 'b' labels in [0, 1] (hard or soft).
    """
    p, y = _probs_labels(probs, labels)
    return float(np.mean((p - y) ** 2))


def negative_log_likelihood(probs: Any, labels: Any, eps: float = 1e-12) -> float:
    """Mean binary cross-entropy ``-mean(y log p + (1 - y) log(1 - p))``.

    Probabilities are clipped to [eps, 1 - eps] so a confident wrong prediction costs
    ``-log(eps)`` instead of infinity.

    Args:
        probs: 'b' predicted P(label = 1).
        labels: 'b' labels in [0, 1] (hard or soft).
        eps: clipping bound, in (0, 0.5).
    """
    if not 0 < eps < 0.5:
        raise ValueError(f"eps must lie in (0, 0.5), got {eps!r}")
    p, y = _probs_labels(probs, labels)
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def auroc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic.

    ``AUC = U / (n_pos * n_neg)`` with ``U = sum(ranks of positives) - n_pos (n_pos + 1) / 2``
    and average ranks, so a tied (positive, negative) pair counts one half (Mann & Whitney
    1947; Hanley & McNeil 1982).

    Args:
        scores: 'b' scores, higher meaning more likely positive.
        labels: 'b' labels, each exactly 0 or 1.

    Raises:
        ValueError: if a label is not 0/1 (names the index) or only one class is present.
    """
    s, y = _as_pair(scores, labels, "scores", "labels")
    bad = np.flatnonzero((y != 0) & (y != 1))
    if bad.size:
        raise ValueError(f"labels[{bad[0]}] = {float(y[bad[0]])!r} is not 0 or 1")
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"auroc needs both classes, got {n_pos} positives and {n_neg} negatives")
    ranks = stats.rankdata(s, method="average")
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def risk_coverage_curve(uncertainty: Any, errors: Any) -> tuple[np.ndarray, np.ndarray]:
    """Selective prediction: keep the least uncertain fraction, measure its error rate.

    Examples are sorted by ``uncertainty`` (ascending); at coverage ``i / b`` the risk is the
    error rate of the ``i`` most certain ones (El-Yaniv & Wiener 2010; Geifman & El-Yaniv 2017).
    Tied uncertainties are kept together: the risk at a tie is the group's average, so the curve
    does not depend on the order of equal values.

    Args:
        uncertainty: 'b', higher means less sure.
        errors: 'b', 1 where the prediction was wrong, else 0.

    Returns:
        ``(coverage, risk)``, each 'b'.
    """
    u, e = _as_pair(uncertainty, errors, "uncertainty", "errors")
    order = np.argsort(u, kind="stable")
    u, e = u[order], e[order]
    # within a run of ties, every prefix gets the run's mean error rate
    _, starts, counts = np.unique(u, return_index=True, return_counts=True)
    e = np.repeat(np.add.reduceat(e, starts) / counts, counts)
    kept = np.arange(1, u.size + 1)
    return kept / u.size, np.cumsum(e) / kept


def area_under_risk_coverage(uncertainty: Any, errors: Any) -> float:
    """AURC: the mean risk over coverages 1/b .. 1; lower is better. An uncertainty that
    carries no information gives about the overall error rate."""
    return float(risk_coverage_curve(uncertainty, errors)[1].mean())


def bootstrap_interval(statistic, *arrays: Any, n_resamples: int = 1000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(*arrays)`` over examples (Efron 1979).

    Every array is resampled with the same indices; resamples on which the statistic raises
    ValueError (e.g. AUROC on a resample with one class) are skipped.
    """
    columns = [_as_array(a, f"arrays[{i}]") for i, a in enumerate(arrays)]
    size = columns[0].size
    for i, col in enumerate(columns):
        if col.size != size:
            raise ValueError(f"arrays[{i}] has length {col.size}, arrays[0] has {size}")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_resamples):
        idx = rng.integers(0, size, size)
        try:
            values.append(statistic(*(c[idx] for c in columns)))
        except ValueError:
            continue
    if not values:
        raise ValueError("bootstrap_interval: the statistic failed on every resample")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def first_error_index(step_scores: Any, threshold: float = 0.5) -> int | None:
    """Index of the first step scored below `threshold` (P(step correct)), or None if none is."""
    below = np.flatnonzero(_as_array(step_scores, "step_scores") < threshold)
    return int(below[0]) if below.size else None


def processbench(step_scores: Sequence[Any], first_errors: Sequence[int | None], threshold: float = 0.5) -> dict:
    """ProcessBench's metric (Zheng et al. 2024): can the model find the earliest wrong step?

    On erroneous solutions (``first_errors[i]`` an index) the prediction must be that exact
    step; on correct ones (None) it must be "no error". Returns both accuracies and their
    harmonic mean ``f1`` (NaN where a class is absent).

    Args:
        step_scores: per solution an 's_i' array of P(step correct).
        first_errors: per solution the index of the first wrong step, or None.
    """
    if len(step_scores) != len(first_errors):
        raise ValueError(f"{len(step_scores)} solutions but {len(first_errors)} first_errors")
    hits = {True: [], False: []}
    for i, (scores, truth) in enumerate(zip(step_scores, first_errors)):
        predicted = first_error_index(scores, threshold)
        hits[truth is not None].append(predicted == truth)
    erroneous = float(np.mean(hits[True])) if hits[True] else float("nan")
    correct = float(np.mean(hits[False])) if hits[False] else float("nan")
    f1 = 2 * erroneous * correct / (erroneous + correct) if erroneous + correct > 0 else 0.0
    return {"error_accuracy": erroneous, "correct_accuracy": correct, "f1": f1,
            "n_erroneous": len(hits[True]), "n_correct": len(hits[False])}


def _correlation_inputs(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated pair for a rank correlation: length >= 2 and neither input constant."""
    a, b = _as_pair(x, y, "x", "y")
    if a.size < 2:
        raise ValueError(f"a correlation needs at least 2 points, got {a.size}")
    for name, arr in (("x", a), ("y", b)):
        if np.all(arr == arr[0]):
            raise ValueError(
                f"{name} is constant ({float(arr[0])!r}); its rank correlation is undefined"
            )
    return a, b


def spearman(x: Any, y: Any) -> float:
    """Spearman rank correlation (Spearman 1904) of 'b' values x (e.g. proxy rewards) and y (e.g.
    gold rewards), via ``scipy.stats.spearmanr``."""
    return float(stats.spearmanr(*_correlation_inputs(x, y)).statistic)


def kendall(x: Any, y: Any) -> float:
    """Kendall rank correlation tau-b (Kendall 1938; 1945 for ties) of 'b' values x and y, via
    ``scipy.stats.kendalltau``."""
    return float(stats.kendalltau(*_correlation_inputs(x, y)).statistic)


def position_consistency(p_a_first: Any, p_a_second: Any) -> float:
    """Fraction of pairs whose pairwise verdict survives swapping the two answers' positions
    (Zheng et al. 2023, "Judging LLM-as-a-Judge", the consistency of a judge under position swap).

    Args:
        p_a_first: 'b' P(a better) from the judge when a is shown first.
        p_a_second: 'b' P(a better) when a is shown second.

    A verdict is "a" where its probability exceeds 0.5, else "b"; consistent pairs get the same
    verdict in both orders.
    """
    first, second = _as_pair(p_a_first, p_a_second, "p_a_first", "p_a_second")
    _check_unit_interval(first, "p_a_first")
    _check_unit_interval(second, "p_a_second")
    return float(np.mean((first > 0.5) == (second > 0.5)))

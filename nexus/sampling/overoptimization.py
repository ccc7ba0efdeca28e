"""Reward-model overoptimisation with a synthetic gold RM (Gao et al. 2022).

A gold reward g labels pairs by Bradley-Terry sampling, P(a preferred to b) = sigmoid(g_a - g_b);
proxy RMs learn from those labels; best-of-n against a proxy is then scored by the gold. Plotted
against d = sqrt(KL(best-of-n || policy)), the proxy reward keeps rising while the gold reward
follows Gao et al.'s best-of-n form R(d) = d (alpha - beta d) (Gao et al. 2022, section 3.1),
rising while alpha dominates and falling past d* = alpha / (2 beta) when beta > 0.

The KL has two forms here: the analytic log n - (n - 1)/n (`sqrt_kl`), an upper bound tight only
when samples never repeat (Beirami et al. 2024), and the exact KL on each pool (`pool_kl`), which
is far smaller when a pool repeats texts, as a pool of a policy that is often right does.
Legend: b pairs, p pools (prompts), c candidates of a pool, n best-of-n sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from nexus.sampling.best_of_n import best_of_n_expectation, bon_kl, distinct_random_curve, empirical_bon_kl


def bradley_terry_labels(gold_a: Sequence[float], gold_b: Sequence[float], seed: int,
                         temperature: float = 1.0) -> np.ndarray:
    """'b' bool: True where a is preferred, drawn with P = sigmoid((g_a - g_b) / temperature).

    Sampled, not thresholded, as Gao et al. 2022 label with their gold RM: the proxy then sees
    the gold's own uncertainty, and pairs the gold cannot tell apart get coin-flip labels.
    """
    a, b = np.asarray(gold_a, dtype=np.float64), np.asarray(gold_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"bradley_terry_labels: gold_a {a.shape} and gold_b {b.shape} must be equal 1-d shapes")
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0")
    p_a = 1.0 / (1.0 + np.exp(-(a - b) / temperature))
    return np.random.default_rng(seed).random(len(a)) < p_a


def power_of_two_ns(big_n: int) -> list[int]:
    """1, 2, 4, ... up to `big_n`, and `big_n` itself where it is not a power of two."""
    if big_n < 1:
        raise ValueError(f"N={big_n} must be >= 1")
    ns = [2**k for k in range(big_n.bit_length()) if 2**k <= big_n]
    return ns if ns[-1] == big_n else [*ns, big_n]


def sqrt_kl(ns: Sequence[int]) -> np.ndarray:
    """'n' d = sqrt(KL(best-of-n || policy)), the x axis of Gao et al. 2022."""
    return np.sqrt([bon_kl(n) for n in ns])


def pool_kl(scores: Sequence[Sequence[float]], texts: Sequence[Sequence[str]], ns: Sequence[int]) -> np.ndarray:
    """'n' KL(best-of-n by `scores` || pool), exact on each pool (`empirical_bon_kl`), mean over pools.

    The x axis of a best-of-n curve where samples repeat: d = sqrt of this, at most `sqrt_kl`.
    """
    if len(scores) != len(texts):
        raise ValueError(f"pool_kl: {len(scores)} score pools but {len(texts)} text pools")
    return np.array([[empirical_bon_kl(s, t, n) for n in ns] for s, t in zip(scores, texts)]).mean(axis=0)


def random_baselines(texts: Sequence[Sequence[str]], values: Sequence[Sequence[float]],
                     ns: Sequence[int]) -> dict[str, np.ndarray]:
    """'n' E[value] of two random rankers, mean over pools: `per_sample` (each candidate its own
    random score: the pool mean at every n) and `per_text` (each distinct text one random score,
    `distinct_random_curve`: the fair baseline for a ranker that scores texts, since a right answer
    that many samples share gets no more chances than any one wrong text)."""
    if len(texts) != len(values):
        raise ValueError(f"random_baselines: {len(texts)} text pools but {len(values)} value pools")
    per_text = np.array([distinct_random_curve(t, v, ns) for t, v in zip(texts, values)]).mean(axis=0)
    per_sample = np.full(len(ns), np.mean([np.mean(v) for v in values]))
    return {"per_sample": per_sample, "per_text": per_text}


def bon_curves(scores: Sequence[Sequence[float]], gold: Sequence[Sequence[float]],
               ns: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """'n' expected proxy and 'n' expected gold reward of best-of-n by `scores`, mean over pools.

    Per pool, the exact expectation over n-subsets (`best_of_n_expectation`); the proxy value
    is the score of the chosen candidate, the gold value its gold reward.
    """
    if len(scores) != len(gold):
        raise ValueError(f"bon_curves: {len(scores)} score pools but {len(gold)} gold pools")
    proxy = np.array([[best_of_n_expectation(s, s, n) for n in ns] for s in scores])
    true = np.array([[best_of_n_expectation(s, g, n) for n in ns] for s, g in zip(scores, gold)])
    return proxy.mean(axis=0), true.mean(axis=0)


def gao_bon(d: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """R(d) = d (alpha - beta d): best-of-n gold reward gain at d = sqrt(KL) (Gao et al. 2022)."""
    return d * (alpha - beta * d)


@dataclass(frozen=True)
class GaoFit:
    """Least-squares fit of `gao_bon`: its parameters, R^2, and the peak d* = alpha / (2 beta)
    (inf where beta <= 0: the fitted gold never turns down)."""

    alpha: float
    beta: float
    r2: float

    @property
    def peak_d(self) -> float:
        return self.alpha / (2 * self.beta) if self.beta > 0 else float("inf")


def fit_gao_bon(d: Sequence[float], gain: Sequence[float]) -> GaoFit:
    """Fit R(d) = d (alpha - beta d) to a gold curve with scipy's `curve_fit`.

    Args:
        d: 'n' sqrt(KL) of each point.
        gain: 'n' gold reward minus that of best-of-1 (R(0) = 0 by the form).

    Returns:
        alpha, beta and R^2 = 1 - SS_res / SS_tot (NaN for a flat curve, where SS_tot = 0).
    """
    from scipy.optimize import curve_fit

    x, y = np.asarray(d, dtype=np.float64), np.asarray(gain, dtype=np.float64)
    if x.shape != y.shape or len(x) < 2:
        raise ValueError(f"fit_gao_bon: need >= 2 points of equal length, got {x.shape} and {y.shape}")
    (alpha, beta), _ = curve_fit(gao_bon, x, y, p0=(1.0, 0.0))
    residual = float(((y - gao_bon(x, alpha, beta)) ** 2).sum())
    total = float(((y - y.mean()) ** 2).sum())
    return GaoFit(float(alpha), float(beta), 1.0 - residual / total if total > 0 else float("nan"))


def rises_then_falls(curve: Sequence[float], tolerance: float = 0.0) -> bool:
    """True where the curve's peak is above its first point and its last point is more than
    `tolerance` below that peak: the overoptimisation signature."""
    c = np.asarray(curve, dtype=np.float64)
    peak = int(np.argmax(c))
    return bool(c[peak] > c[0] + tolerance and c[-1] < c[peak] - tolerance)

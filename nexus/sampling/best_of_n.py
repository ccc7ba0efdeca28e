"""Best-of-N selection and the unbiased estimate of its expected result for every n <= N.

Given one pool of N scored candidates per prompt, the expected gold value of "draw n, keep the
one with the highest score" is computed exactly over all n-subsets of the pool (Nakano et al.
2021, appendix; Gao et al. 2022): after sorting by score, candidate i (0-based, ascending) is
the maximum of a random n-subset with probability C(i, n-1) / C(N, n). Legend: N candidates.
"""

from __future__ import annotations

from collections import Counter
from math import comb, log
from typing import Callable, Hashable, Sequence

import numpy as np


def best_of_n_expectation(scores: Sequence[float], gold: Sequence[float], n: int) -> float:
    """E[gold of the top-scored of n candidates drawn without replacement from the pool].

    Ties in `scores` are split evenly: tied candidates share their combined chance equally,
    so the estimate does not depend on the pool's order.
    """
    s, g = np.asarray(scores, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    big = len(s)
    if len(g) != big or not 1 <= n <= big:
        raise ValueError(f"best_of_n_expectation: {big} scores, {len(g)} gold values, n={n} (need 1 <= n <= N)")
    order = np.argsort(s, kind="stable")
    s, g = s[order], g[order]
    weights = np.array([comb(i, n - 1) for i in range(big)], dtype=np.float64) / comb(big, n)
    _, starts, counts = np.unique(s, return_index=True, return_counts=True)
    tied_weight = np.add.reduceat(weights, starts) / counts  # share each tie group's weight evenly
    return float((np.repeat(tied_weight, counts) * g).sum())


def majority_vote_expectation(answers: Sequence[Hashable], gold: Sequence[float], n: int,
                              weights: Sequence[float] | None = None, samples: int = 256,
                              seed: int = 0) -> float:
    """E[gold of the (weighted) majority answer among n candidates], by Monte Carlo over subsets.

    The gold value of an answer is that of its candidates (they agree: same final answer); ties
    between answers are broken uniformly. With `weights` (e.g. RM scores turned positive) each
    vote counts its weight (RM-weighted majority vote). n = N is computed exactly once.
    """
    big = len(answers)
    if len(gold) != big or not 1 <= n <= big:
        raise ValueError(f"majority_vote_expectation: {big} answers, {len(gold)} gold values, n={n}")
    if n == 1:  # one candidate: its own answer wins, each equally likely
        return float(np.mean(gold))
    w = np.ones(big) if weights is None else np.asarray(weights, dtype=np.float64)
    answer_gold = {a: float(v) for a, v in zip(answers, gold)}
    rng = np.random.default_rng(seed)
    draws = 1 if n == big else samples
    total = 0.0
    for _ in range(draws):
        pick = rng.choice(big, size=n, replace=False) if n < big else np.arange(big)
        votes = Counter()
        for j in pick:
            votes[answers[j]] += w[j]
        top = max(votes.values())
        winners = [a for a, v in votes.items() if v == top]
        total += float(np.mean([answer_gold[a] for a in winners]))
    return total / draws


def bon_kl(n: int) -> float:
    """Analytic KL(best-of-n || policy) = log n - (n - 1) / n (Stiennon et al. 2020; Gao et al. 2022)."""
    if n < 1:
        raise ValueError(f"n={n} must be >= 1")
    return log(n) - (n - 1) / n


def select(scores: Sequence[float], how: str = "argmax", std: Sequence[float] | None = None,
           penalty: float = 1.0) -> int:
    """Index of the chosen candidate: `argmax` of the score, or `penalized`: argmax of
    score - penalty * std (uncertainty-penalised selection)."""
    s = np.asarray(scores, dtype=np.float64)
    if how == "penalized":
        if std is None:
            raise ValueError("how='penalized' needs std")
        s = s - penalty * np.asarray(std, dtype=np.float64)
    elif how != "argmax":
        raise ValueError(f"how={how!r}: expected 'argmax' or 'penalized'")
    return int(np.argmax(s))


def curve(method: Callable[[int], float], ns: Sequence[int]) -> dict[int, float]:
    """{n: method(n)} for the n of a best-of-n curve."""
    return {n: method(n) for n in ns}

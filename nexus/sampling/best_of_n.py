"""Best-of-N selection and the unbiased estimate of its expected result for every n <= N.

Given one pool of N scored candidates per prompt, the expected gold value of "draw n, keep the
one with the highest score" is computed exactly over all n-subsets of the pool (Nakano et al.
2021, appendix; Gao et al. 2022): after sorting by score, candidate i (0-based, ascending) is
the maximum of a random n-subset with probability C(i, n-1) / C(N, n).

Which score a pool is ranked by is a selection rule (`selection_scores`): the RM's reward
(`argmax`), the uncertainty-penalised `mean - lambda * std`, or, over an ensemble's members,
the worst case (WCO) and uncertainty-weighted optimisation (UWO) of Coste et al. 2023.
Legend: N (or c) candidates of one pool, k ensemble members.
"""

from __future__ import annotations

from collections import Counter
from math import comb, log
from typing import Callable, Hashable, Sequence

import numpy as np

from nexus.base import RewardOutput


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


# Rules that rank a pool by a score vector; "weighted_vote" (see `vote_weights`) votes instead.
SELECTION_RULES = ("argmax", "penalized", "worst_case", "uwo")


def split_output(out: RewardOutput, sizes: Sequence[int]) -> list[RewardOutput]:
    """Cut one `score` output over consecutive pools into one `RewardOutput` per pool of `sizes`."""
    if sum(sizes) != len(out.rewards):
        raise ValueError(f"split_output: sizes sum to {sum(sizes)} but the output has {len(out.rewards)} rewards")
    bounds = np.cumsum([0, *sizes])

    def part(value, lo: int, hi: int):
        if value is None:
            return None
        if isinstance(value, dict):
            return {key: v[lo:hi] for key, v in value.items()}
        return value[lo:hi]

    return [RewardOutput(**{field: part(value, lo, hi) for field, value in vars(out).items()})
            for lo, hi in zip(bounds[:-1], bounds[1:])]


def available_rules(out: RewardOutput) -> list[str]:
    """The selection rules `out` carries what they need for: `argmax` always, `penalized`
    with an uncertainty, `worst_case` and `uwo` with `extras["member_means"]` (an ensemble)."""
    rules = ["argmax"]
    if out.uncertainty is not None:
        rules.append("penalized")
    if out.extras is not None and "member_means" in out.extras:
        rules += ["worst_case", "uwo"]
    return rules


def _numpy(value) -> np.ndarray:
    array = np.asarray(value.detach().cpu().double() if hasattr(value, "detach") else value, dtype=np.float64)
    return np.where(np.isnan(array), -np.inf, array)  # an unreadable score (NaN) is never picked


def _rule_scores(out: RewardOutput, rule: str, penalty: float, uwo_lambda: float) -> np.ndarray:
    """'c' the score one rule ranks a pool by; see `selection_scores`."""
    if rule == "argmax":
        return _numpy(out.rewards)
    members = None if out.extras is None else out.extras.get("member_means")
    if rule in ("worst_case", "uwo") and members is None:
        raise ValueError(f"rule {rule!r} needs RewardOutput.extras['member_means'] (an ensemble); this output has "
                         f"extras {sorted(out.extras or {})}")
    if rule == "penalized":
        if out.uncertainty is None:
            raise ValueError("rule 'penalized' needs RewardOutput.uncertainty; this model returns None")
        mean = _numpy(out.rewards) if members is None else _numpy(members).mean(axis=1)
        return mean - penalty * _numpy(out.uncertainty)
    means = _numpy(members)  # 'c k'
    if rule == "worst_case":  # WCO: the most pessimistic member (Coste et al. 2023, eq. 3)
        return means.min(axis=1)
    if rule == "uwo":  # UWO: mean - lambda * variance of the members (Coste et al. 2023, eq. 4)
        return means.mean(axis=1) - uwo_lambda * means.var(axis=1)
    raise ValueError(f"rule={rule!r}: expected one of {SELECTION_RULES}")


def selection_scores(out: RewardOutput, rules: Sequence[str] | None = None, penalty: float = 1.0,
                     uwo_lambda: float = 1.0) -> dict[str, np.ndarray]:
    """{rule: 'c' scores to rank one pool by}, for `best_of_n_expectation` or `select`.

    argmax: the rewards `score` returned. penalized: mean - `penalty` * std, the mean over an
    ensemble's members (else the reward) and std = `uncertainty`. worst_case: the minimum over
    members (WCO). uwo: member mean - `uwo_lambda` * member variance (UWO). NaN scores become
    -inf, so an unreadable output is ranked last.

    Args:
        out: the `score` output of one pool of c candidates.
        rules: which rules; None: every rule `available_rules(out)` gives.

    Raises:
        ValueError: an unknown rule, or one whose input (`uncertainty`, `extras['member_means']`) is missing.
    """
    chosen = available_rules(out) if rules is None else list(rules)
    return {rule: _rule_scores(out, rule, penalty, uwo_lambda) for rule in chosen}


def vote_weights(out: RewardOutput) -> np.ndarray:
    """'c' weights for RM-weighted majority vote: exp(r - max r) over the pool.

    Bradley-Terry rewards are defined up to a shift; exponential weights make the vote
    invariant to it (the winner depends on weight ratios only), and stay positive for any
    reward scale, unlike raw rewards. An unreadable (NaN) reward gets weight 0.
    """
    r = _numpy(out.rewards)
    top = r.max()
    if not np.isfinite(top):
        return np.ones_like(r)  # nothing readable: every candidate votes equally
    return np.exp(r - top)

"""Best-of-N selection and the unbiased estimate of its expected result for every n <= N.

Given one pool of N scored candidates per prompt, the expected gold value of "draw n, keep the
one with the highest score" is computed exactly over all n-subsets of the pool (Nakano et al.
2021, appendix; Gao et al. 2022): after sorting by score, candidate i (0-based, ascending) is
the maximum of a random n-subset with probability C(i, n-1) / C(N, n).

Which score a pool is ranked by is a selection rule (`selection_scores`): the RM's reward
(`argmax`), the uncertainty-penalised `mean - lambda * std`, or, over an ensemble's members,
the worst case (WCO) and uncertainty-weighted optimisation (UWO) of Coste et al. 2023.

Pools repeat texts (a policy that is often right writes the same right solution many times), so
two quantities are computed per distinct text: the exact KL of best-of-n from the pool
(`empirical_bon_kl`, at most the analytic `bon_kl`) and the random baseline for a ranker that
scores texts (`distinct_random_curve`).
Legend: N (or c) candidates of one pool, k ensemble members.
"""

from __future__ import annotations

from collections import Counter
from math import comb, log
from typing import Callable, Hashable, Sequence

import numpy as np

from nexus.outputs import RewardOutput


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
    """Analytic KL(best-of-n || policy) = log n - (n - 1) / n (Stiennon et al. 2020; Gao et al. 2022).

    Exact only when samples never repeat or tie; otherwise an upper bound (Beirami et al. 2024),
    loose for pools that repeat texts: `empirical_bon_kl` gives the pool's exact value.
    """
    if n < 1:
        raise ValueError(f"n={n} must be >= 1")
    return log(n) - (n - 1) / n


# Identical texts scored in different batches (or packed rows) differ by float error only.
_SAME_TEXT_RTOL, _SAME_TEXT_ATOL = 1e-4, 1e-5


def text_groups(texts: Sequence[Hashable], values: Sequence[float],
                what: str = "values") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group a pool by distinct text: 'c' group index per candidate, 'k' count and 'k' value per text.

    Identical texts must carry equal values (up to the float error of batched scoring, a relative
    1e-4); a text's value is that of its first copy.

    Raises:
        ValueError: lengths differ, or candidate i's value differs from an earlier copy's (names i).
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or len(v) != len(texts) or len(v) == 0:
        raise ValueError(f"text_groups: {len(texts)} texts but {what} of shape {v.shape} (need equal, >= 1)")
    first: dict[Hashable, int] = {}
    group = np.array([first.setdefault(t, len(first)) for t in texts])
    firsts = np.unique(group, return_index=True)[1]
    same = np.isclose(v, v[firsts][group], rtol=_SAME_TEXT_RTOL, atol=_SAME_TEXT_ATOL, equal_nan=True)
    if not same.all():
        i = int(np.argmin(same))
        j = int(firsts[group[i]])
        raise ValueError(f"{what}[{i}] = {float(v[i])} but an identical text at index {j} has {float(v[j])}: "
                         f"identical texts need equal {what}")
    return group, np.bincount(group), v[firsts]


def empirical_bon_kl(scores: Sequence[float], texts: Sequence[Hashable], n: int) -> float:
    """Exact KL(best-of-n || pool) when the policy is the pool's empirical distribution over texts.

    Best-of-n draws n candidates i.i.d. (with replacement) from the pool and keeps the top score,
    ties broken uniformly. Over the sorted distinct score levels with pool mass P_L and cumulative
    mass F_L, the top lands on level L with q_L = F_L^n - F_{L-1}^n, spread over the level's texts
    in proportion to their mass, so q/p = q_L / P_L within a level and KL = sum_L q_L log(q_L / P_L).
    This is a coarsening of continuous best-of-n, so by data processing it never exceeds the
    analytic log n - (n - 1)/n (`bon_kl`), the bound of Beirami et al. 2024; with repeated texts or
    tied scores it is far smaller. `texts` is only checked: identical texts need equal scores.

    Raises:
        ValueError: n < 1, or identical texts with different scores (naming the index).
    """
    if n < 1:
        raise ValueError(f"n={n} must be >= 1")
    group, counts, value = text_groups(texts, scores, "scores")
    value = np.where(np.isnan(value), -np.inf, value)  # an unreadable score is never chosen, as in `_numpy`
    _, level = np.unique(value, return_inverse=True)  # ascending distinct score levels
    mass = np.bincount(level.ravel(), weights=counts) / len(group)
    cdf = np.cumsum(mass)
    cdf[-1] = 1.0  # no rounding drift at the top
    q = cdf**n - np.concatenate([[0.0], cdf[:-1]]) ** n
    kept = q > 0
    return float(np.sum(q[kept] * np.log(q[kept] / mass[kept])))


def distinct_random_curve(texts: Sequence[Hashable], gold: Sequence[float], ns: Sequence[int]) -> np.ndarray:
    """'n' E[gold of best-of-n] when every distinct text gets an i.i.d. uniform random score.

    The random baseline for a ranker that scores texts: copies of a text share its score, so unlike
    a per-candidate random pick (gold mean, for every n) it favours no text for being frequent. The
    n are drawn without replacement from the pool, as in `best_of_n_expectation`, so both compare
    like for like. Exact: given its score u, text t (m copies) is chosen iff the n-subset hits it
    and misses every higher text; each other text is higher with probability 1 - u, so with h the
    copies of the higher texts, P(t) = int_0^1 E_h[C(N-h, n) - C(N-h-m, n)] du / C(N, n). The
    integrand is a polynomial of degree K - 1 in u (K distinct texts), integrated exactly by
    Gauss-Legendre quadrature with K // 2 + 1 nodes.

    Raises:
        ValueError: an n outside [1, N], or identical texts with different gold (naming the index).
    """
    group, counts, value = text_groups(texts, gold, "gold")
    big, ns = len(group), list(ns)
    if not all(1 <= n <= big for n in ns):
        raise ValueError(f"distinct_random_curve: ns={ns} must lie in [1, N={big}]")
    nodes, weights = np.polynomial.legendre.leggauss(len(counts) // 2 + 1)
    u, w = (nodes + 1) / 2, weights / 2  # nodes on [0, 1]
    chosen = {m: _chosen_probability(counts, m, u, w, ns) for m in set(counts.tolist())}
    return np.array([[chosen[m][j] for m in counts.tolist()] for j in range(len(ns))]) @ value


def _chosen_probability(counts: np.ndarray, m: int, u: np.ndarray, w: np.ndarray, ns: list[int]) -> list[float]:
    """P(a given text with m copies is chosen) for each n, for `distinct_random_curve`."""
    big = int(counts.sum())
    others = counts.tolist()
    others.remove(m)
    higher = np.zeros((len(u), big + 1))  # [node, h]: P(the higher texts hold h copies | u)
    higher[:, 0] = 1.0
    for size in others:  # each other text is lower (prob u) or higher (prob 1 - u)
        shifted = np.zeros_like(higher)
        shifted[:, size:] = higher[:, :-size]
        higher = u[:, None] * higher + (1 - u)[:, None] * shifted
    mean_higher = w @ higher  # 'h': the u-integral of P(h | u)
    return [sum(mean_higher[h] * (comb(big - h, n) - comb(big - h - m, n)) / comb(big, n)
                for h in range(big - m + 1)) for n in ns]


def distinct_random_expectation(texts: Sequence[Hashable], gold: Sequence[float], n: int) -> float:
    """E[gold of best-of-n] under an i.i.d. uniform random score per distinct text (`distinct_random_curve`)."""
    return float(distinct_random_curve(texts, gold, [n])[0])


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

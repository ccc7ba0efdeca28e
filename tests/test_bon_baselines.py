"""The pool's exact best-of-n KL and the per-distinct-text random baseline, against brute force."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

import numpy as np
import pytest

from nexus.sampling.best_of_n import (bon_kl, distinct_random_curve, distinct_random_expectation,
                                      empirical_bon_kl)


def brute_force_kl(scores, texts, n):
    """KL(best-of-n || pool) by enumerating all N^n ordered draws with replacement."""
    big = len(scores)
    q = defaultdict(float)
    for draw in itertools.product(range(big), repeat=n):
        top = max(scores[i] for i in draw)
        tied = [i for i in draw if scores[i] == top]
        for i in tied:  # ties broken uniformly over the drawn positions
            q[texts[i]] += 1 / (big**n * len(tied))
    p = {t: texts.count(t) / big for t in set(texts)}
    return sum(v * math.log(v / p[t]) for t, v in q.items() if v > 0)


def brute_force_distinct_random(texts, gold, n):
    """Every ranking of the distinct texts (i.i.d. uniform scores) x every n-subset, equally likely."""
    distinct = list(dict.fromkeys(texts))
    values = []
    for ranking in itertools.permutations(range(len(distinct))):
        rank = dict(zip(distinct, ranking))
        for subset in itertools.combinations(range(len(texts)), n):
            values.append(gold[max(subset, key=lambda i: rank[texts[i]])])
    return float(np.mean(values))


POOLS = [  # (texts, scores): repeats, ties between distinct texts, and a single repeated text
    (list("aabccc"), [1.0, 1.0, 2.0, 1.0, 1.0, 1.0]),
    (list("abcde"), [0.3, -1.0, 2.0, 0.5, 0.1]),
    (list("abcabd"), [5.0, 2.0, 2.0, 5.0, 2.0, -3.0]),
    (list("aaaa"), [1.0] * 4),
]


@pytest.mark.parametrize("texts, scores", POOLS)
def test_empirical_kl_matches_enumeration_of_every_draw(texts, scores):
    for n in range(1, 5):
        assert empirical_bon_kl(scores, texts, n) == pytest.approx(brute_force_kl(scores, texts, n), abs=1e-12)
    assert empirical_bon_kl(scores, texts, 1) == pytest.approx(0.0, abs=1e-15)


def test_empirical_kl_random_pools_with_ties_match_enumeration():
    rng = np.random.default_rng(0)
    for _ in range(5):
        texts = [f"t{k}" for k in rng.integers(0, 4, 6)]
        level = {t: float(rng.integers(0, 3)) for t in set(texts)}  # distinct texts often tie
        scores = [level[t] for t in texts]
        for n in (2, 3, 5):
            assert empirical_bon_kl(scores, texts, n) == pytest.approx(brute_force_kl(scores, texts, n), abs=1e-12)


def test_empirical_kl_distinct_texts_approach_the_analytic_bound_from_below():
    for n in (2, 4, 16):
        gaps = []
        for big in (8, 64, 512, 8192):
            scores = np.random.default_rng(big).permutation(big).astype(float)
            kl = empirical_bon_kl(scores, [str(i) for i in range(big)], n)
            assert kl <= bon_kl(n) + 1e-12
            gaps.append(bon_kl(n) - kl)
        assert all(a > b for a, b in zip(gaps, gaps[1:])) and gaps[-1] < 2e-3


def test_empirical_kl_shrinks_with_repeats_and_checks_texts():
    # 128 candidates: one correct text repeated 32 times on top, 96 distinct wrong ones below it.
    texts = ["right"] * 32 + [f"wrong {i}" for i in range(96)]
    scores = [10.0] * 32 + list(range(-96, 0))
    # The top text is chosen unless all 128 draws miss it (0.75^128 ~ 1e-16): KL = log(1 / 0.25).
    assert empirical_bon_kl(scores, texts, 128) == pytest.approx(math.log(4), abs=1e-12)
    assert bon_kl(128) == pytest.approx(3.86, abs=0.01)  # the analytic value, 2.8 times larger
    assert empirical_bon_kl([1.0, float("nan"), 2.0], list("abc"), 2) == pytest.approx(
        brute_force_kl([1.0, -math.inf, 2.0], list("abc"), 2))
    with pytest.raises(ValueError, match=r"scores\[3\] = 2.5 but an identical text at index 1"):
        empirical_bon_kl([1.0, 2.0, 0.0, 2.5], list("abcb"), 2)
    empirical_bon_kl([1.0, 2.0, 2.0 + 1e-7], list("abb"), 2)  # float error of batched scoring passes
    with pytest.raises(ValueError, match="n=0"):
        empirical_bon_kl([1.0], ["a"], 0)


@pytest.mark.parametrize("texts", [list("aabcab"), list("abcdde"), list("aaabbbc"), list("abcde")])
def test_distinct_random_matches_enumeration_of_rankings_and_subsets(texts):
    gold_of = {t: v for t, v in zip("abcde", [1.0, 0.0, 0.25, -2.0, 3.5])}
    gold = [gold_of[t] for t in texts]
    curve = distinct_random_curve(texts, gold, range(1, len(texts) + 1))
    for n, value in enumerate(curve, start=1):
        assert value == pytest.approx(brute_force_distinct_random(texts, gold, n), abs=1e-12)
    assert curve[0] == pytest.approx(np.mean(gold))  # best-of-1 is a uniform candidate
    distinct = list(dict.fromkeys(texts))
    assert curve[-1] == pytest.approx(np.mean([gold_of[t] for t in distinct]))  # n = N: a uniform text


def test_distinct_random_penalises_a_repeated_right_answer_and_matches_monte_carlo():
    # The pools' failure mode: every right sample is one string, the wrong ones spread out.
    texts = ["right"] * 40 + [f"wrong {i % 25}" for i in range(60)]
    gold = [1.0] * 40 + [0.0] * 60
    curve = distinct_random_curve(texts, gold, [1, 4, 100])
    assert curve[0] == pytest.approx(0.4) and curve[2] == pytest.approx(1 / 26)
    rng = np.random.default_rng(1)
    hits, draws = 0.0, 40_000
    for _ in range(draws):
        u = rng.random(26)  # one uniform score per distinct text: right is text 0
        subset = rng.choice(100, size=4, replace=False)
        ids = [0 if s < 40 else 1 + (s - 40) % 25 for s in subset]
        hits += max(ids, key=lambda k: u[k]) == 0
    se = math.sqrt(curve[1] * (1 - curve[1]) / draws)
    assert abs(hits / draws - curve[1]) < 4 * se and curve[1] < 0.4 - 20 * se
    assert distinct_random_expectation(texts, gold, 4) == pytest.approx(curve[1])


def test_distinct_random_equals_the_mean_when_texts_are_distinct():
    gold = np.random.default_rng(2).normal(size=128)
    texts = [f"s{i}" for i in range(128)]
    curve = distinct_random_curve(texts, gold, [1, 2, 16, 127, 128])
    assert np.allclose(curve, gold.mean(), atol=1e-10)  # 65 quadrature nodes, 128 texts
    with pytest.raises(ValueError, match="ns="):
        distinct_random_curve(texts, gold, [129])
    with pytest.raises(ValueError, match=r"gold\[2\]"):
        distinct_random_expectation(["a", "b", "a"], [1.0, 0.0, 0.0], 2)


def test_pool_means_and_the_study_curve_use_the_exact_kl():
    from experiments.bon_overoptimization import curve_result
    from nexus.sampling.overoptimization import fit_gao_bon, pool_kl, random_baselines, sqrt_kl

    texts = [list("aabcdd"), list("abcdef"), list("aaaaab")]
    gold = [[1.0, 1.0, 0.0, -1.0, 0.5, 0.5], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [2.0] * 5 + [0.0]]
    scores = [[3.0, 3.0, 1.0, 0.0, 2.0, 2.0], [6.0, 5.0, 4.0, 3.0, 2.0, 1.0], [1.0] * 5 + [4.0]]
    ns = [1, 2, 4, 6]
    kl = pool_kl(scores, texts, ns)
    assert kl[:3] == pytest.approx([np.mean([brute_force_kl(s, t, n) for s, t in zip(scores, texts)])
                                    for n in (1, 2, 4)], abs=1e-12)
    base = random_baselines(texts, gold, ns)
    assert base["per_sample"] == pytest.approx([np.mean(np.mean(gold, axis=1))] * 4)
    assert base["per_text"] == pytest.approx(
        [np.mean([brute_force_distinct_random(t, g, n) for t, g in zip(texts, gold)]) for n in ns], abs=1e-12)
    pools = {"gold": gold, "pools": texts}
    row, points = curve_result({"proxy": "p", "rule": "argmax", "n_labels": 1}, scores, pools, ns, 0.0, "pool")
    assert [p["sqrt_kl_pool"] for p in points] == pytest.approx(np.sqrt(kl))
    assert [p["sqrt_kl"] for p in points] == [p["sqrt_kl_pool"] for p in points]
    assert [p["sqrt_kl_bound"] for p in points] == pytest.approx(sqrt_kl(ns))
    assert row["kl_pool_bo6"] == pytest.approx(kl[-1]) and kl[-1] < sqrt_kl([6])[0] ** 2
    bound_row, _ = curve_result({"proxy": "p", "rule": "argmax", "n_labels": 1}, scores, pools, ns, 0.0, "bound")
    gain = np.array([p["gold_gain"] for p in points])
    assert bound_row["alpha"] == pytest.approx(fit_gao_bon(sqrt_kl(ns), gain).alpha)
    assert row["alpha"] == pytest.approx(fit_gao_bon(np.sqrt(kl), gain).alpha)

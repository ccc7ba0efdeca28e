"""Best-of-N estimators against brute force over every subset, and the policies."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from nexus.data import arithmetic
from nexus.sampling import ArithmeticPolicy, generate_cached
from nexus.sampling.best_of_n import best_of_n_expectation, bon_kl, majority_vote_expectation


def brute_force(scores, gold, n):
    values = []
    for subset in itertools.combinations(range(len(scores)), n):
        top = max(scores[i] for i in subset)
        tied = [gold[i] for i in subset if scores[i] == top]
        values.append(np.mean(tied))
    return float(np.mean(values))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_best_of_n_matches_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, 8).astype(float)  # many ties
    gold = rng.random(8)
    for n in range(1, 9):
        assert best_of_n_expectation(scores, gold, n) == pytest.approx(brute_force(scores, gold, n))
    assert best_of_n_expectation(scores, gold, 1) == pytest.approx(gold.mean())
    with pytest.raises(ValueError, match="n=9"):
        best_of_n_expectation(scores, gold, 9)


def test_majority_vote_and_kl():
    answers, gold = [5, 5, 3, 3, 3, 7], [1, 1, 0, 0, 0, 0]
    assert majority_vote_expectation(answers, gold, 6) == 0.0  # 3 wins outright
    assert majority_vote_expectation(answers, gold, 6, weights=[5, 5, 1, 1, 1, 1]) == 1.0
    exact = brute_force_vote(answers, gold, 3)
    assert majority_vote_expectation(answers, gold, 3, samples=4000) == pytest.approx(exact, abs=0.03)
    assert bon_kl(1) == 0.0 and bon_kl(4) == pytest.approx(math.log(4) - 0.75)


def brute_force_vote(answers, gold, n):
    values = []
    for subset in itertools.combinations(range(len(answers)), n):
        counts = {}
        for i in subset:
            counts[answers[i]] = counts.get(answers[i], 0) + 1
        top = max(counts.values())
        winners = [a for a, c in counts.items() if c == top]
        values.append(np.mean([gold[answers.index(a)] for a in winners]))
    return float(np.mean(values))


def test_arithmetic_policy_error_rate_and_prefix(tmp_path):
    prompts = [p.prompt for p in arithmetic.generate(200, 3)["pairwise"]]
    perfect = ArithmeticPolicy(error_rate=0.0).generate(prompts, 2)
    assert all(arithmetic.gold_reward(p, s) == 1.0 for p, ss in zip(prompts, perfect) for s in ss)
    noisy = ArithmeticPolicy(error_rate=0.3).generate(prompts, 4, seed=1)
    steps = [arithmetic.label_steps(p, arithmetic.parse_steps(s)) for p, ss in zip(prompts, noisy) for s in ss]
    first_ok = np.mean([labels[0] for labels in steps])
    assert abs(first_ok - 0.7) < 0.05  # the first step is wrong with probability error_rate
    prefix = noisy[0][0].split("\n")[0]
    completions = ArithmeticPolicy(0.3).complete([prompts[0]], [prefix], 5)[0]
    assert all(c.split("\n")[0] == prefix and len(arithmetic.parse_steps(c)) == len(perfect[0][0].split("\n"))
               for c in completions)
    policy = ArithmeticPolicy(0.3)
    first = generate_cached(policy, prompts[:5], 3, seed=2, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 1
    assert generate_cached(policy, prompts[:5], 3, seed=2, cache_dir=tmp_path) == first
    generate_cached(policy, prompts[:5], 3, seed=3, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_shepherd_labels_equal_exact_labels_for_an_error_free_roller():
    from nexus.sampling.shepherd import arithmetic_correct, shepherd_labels

    data = arithmetic.generate(40, 5)["process"]
    prompts, solutions = [ex.prompt for ex in data], [list(ex.steps) for ex in data]
    exact = [list(ex.labels) for ex in data]
    # an error-free policy completes a correct prefix correctly and cannot repair a wrong one
    assert shepherd_labels(ArithmeticPolicy(0.0), prompts, solutions, 3, arithmetic_correct) == exact
    soft = shepherd_labels(ArithmeticPolicy(0.5), prompts, solutions, 16, arithmetic_correct, seed=1)
    hard = shepherd_labels(ArithmeticPolicy(0.5), prompts, solutions, 16, arithmetic_correct, "hard", seed=1)
    for s, h, e in zip(soft, hard, exact):
        assert all(0 < x < 1 or x == y for x, y in zip(s[:-1], e[:-1]))  # noisy rollouts: fractions
        assert h == [float(x > 0) for x in s]
    wrong = [x for s, e in zip(soft, exact) for x, y in zip(s, e) if y == 0]
    right = [x for s, e in zip(soft, exact) for x, y in zip(s, e) if y == 1]
    assert np.mean(wrong) < 0.1 < 0.3 < np.mean(right)  # a later error rarely cancels an earlier one

"""Best-of-N estimators against brute force over every subset, and the policies."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from nexus.tasks import arithmetic
from nexus.sampling import generate_cached
from nexus.tasks.arithmetic import ArithmeticPolicy
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
    from nexus.tasks.arithmetic.shepherd import arithmetic_correct, shepherd_labels

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


def test_selection_rules_rank_by_hand_computed_scores():
    import torch

    from nexus.base import RewardOutput
    from nexus.sampling.best_of_n import available_rules, select, selection_scores, split_output, vote_weights

    # Three candidates, three members. Means 2, 1.5, 0; member variances 8/3, 1/6, 0; the ensemble's
    # uncertainty (total std) 3, 0.5, 0 is given explicitly, so each rule picks a different one.
    members = torch.tensor([[4.0, 2.0, 0.0], [1.0, 1.5, 2.0], [0.0, 0.0, 0.0]])
    out = RewardOutput(rewards=members.mean(1), uncertainty=torch.tensor([3.0, 0.5, 0.0]),
                       extras={"member_means": members})
    assert available_rules(out) == ["argmax", "penalized", "worst_case", "uwo"]
    s = selection_scores(out, penalty=1.0, uwo_lambda=1.0)
    np.testing.assert_allclose(s["argmax"], [2.0, 1.5, 0.0])
    np.testing.assert_allclose(s["penalized"], [2 - 3, 1.5 - 0.5, 0.0])
    np.testing.assert_allclose(s["worst_case"], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(s["uwo"], [2 - 8 / 3, 1.5 - 1 / 6, 0.0])
    assert [select(s[r]) for r in ("argmax", "penalized", "worst_case", "uwo")] == [0, 1, 1, 1]
    assert select(selection_scores(out, ["penalized"], penalty=0.1)["penalized"]) == 0  # 2 - 0.3 > 1.5 - 0.05
    assert select(selection_scores(out, ["uwo"], uwo_lambda=0.1)["uwo"]) == 0
    gold = [0.0, 1.0, 0.0]
    assert best_of_n_expectation(s["argmax"], gold, 3) == 0.0 and best_of_n_expectation(s["uwo"], gold, 3) == 1.0
    # best of 2 by worst case: pairs {0,1} -> 1, {1,2} -> 1, {0,2} tie 0/0 -> 0: 2/3
    assert best_of_n_expectation(s["worst_case"], gold, 2) == pytest.approx(2 / 3)

    scalar = RewardOutput(rewards=torch.tensor([1.0, float("nan"), 0.0]))
    assert available_rules(scalar) == ["argmax"]
    assert selection_scores(scalar)["argmax"][1] == -np.inf  # unreadable: never picked
    np.testing.assert_allclose(vote_weights(scalar), [1.0, 0.0, np.exp(-1.0)])
    with pytest.raises(ValueError, match=r"extras\['member_means'\]"):
        selection_scores(scalar, ["uwo"])
    with pytest.raises(ValueError, match="uncertainty"):
        selection_scores(scalar, ["penalized"])
    first, second = split_output(out, [2, 1])
    assert torch.equal(second.extras["member_means"], members[2:]) and first.rewards.tolist() == [2.0, 1.5]
    # exp weights: a vote that raw rewards would tip the other way (answer 7 has 2 votes of weight
    # e^-2 each, answer 5 one of weight 1) goes to 5
    w = vote_weights(RewardOutput(rewards=torch.tensor([3.0, 1.0, 1.0])))
    assert majority_vote_expectation([5, 7, 7], [1, 0, 0], 3, weights=w) == 1.0
    assert majority_vote_expectation([5, 7, 7], [1, 0, 0], 3, weights=[3.0, 1.9, 1.9]) == 0.0

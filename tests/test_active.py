"""Active learning: disagreement and margin scores by hand, the acquisition picks
the expected pairs, the pool loop's bookkeeping, and the tiny study end to end."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nexus.active import (active_learning, member_probabilities, mutual_information, probability_variance,
                          select_pairs, top_k)
from nexus.base import RewardModel, RewardOutput
from nexus.data.formats import PairwiseExample
from tests.conftest import compose_config


class LookupRM(RewardModel):
    """A fake ensemble: each response text has fixed member rewards; the reward is their mean."""

    model_type = "lookup"

    def __init__(self, members: dict[str, list[float]], ensemble: bool = True):
        super().__init__()
        self.members, self.ensemble = members, ensemble

    @property
    def device(self):
        return torch.device("cpu")

    def _score_batch(self, prompts, responses):
        means = torch.tensor([self.members[r] for r in responses])
        extras = {"member_means": means, "member_vars": torch.zeros_like(means)} if self.ensemble else None
        return RewardOutput(rewards=means.mean(-1), extras=extras)

    def config_dict(self):
        return {}

    @classmethod
    def _from_config(cls, config, directory):
        raise NotImplementedError


# member rewards of the 'a' side; every 'b' side is [0, 0]
POOL_MEMBERS = {"agree": [1.0, 1.0], "split": [3.0, -3.0], "close": [0.2, 0.2], "lean": [2.0, 0.0]}
POOL = [PairwiseExample("p", name, "zero") for name in POOL_MEMBERS]
RM = LookupRM({**POOL_MEMBERS, "zero": [0.0, 0.0]})


def h(p: float) -> float:
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_mutual_information_and_variance_by_hand():
    probs = np.array([[0.9, 0.9], [0.1, 0.9], [0.5, 0.5], [0.2, 0.6]])
    np.testing.assert_allclose(mutual_information(probs),
                               [0.0, h(0.5) - h(0.1), 0.0, h(0.4) - (h(0.2) + h(0.6)) / 2], atol=1e-12)
    np.testing.assert_allclose(probability_variance(probs), [0.0, 0.16, 0.0, 0.04], atol=1e-12)
    with pytest.raises(ValueError, match="'b k'"):
        mutual_information(np.array([0.5, 0.5]))


def test_member_probabilities_read_the_ensemble_extras():
    a = RewardOutput(torch.zeros(1), extras={"member_means": torch.tensor([[2.0, 0.0]]),
                                             "member_vars": torch.tensor([[0.0, 8 / math.pi]])})
    b = RewardOutput(torch.zeros(1), extras={"member_means": torch.tensor([[1.0, -1.0]]),
                                             "member_vars": torch.zeros(1, 2)})
    # member 0: sigmoid(2 - 1); member 1: the probit-integrated sigmoid(1 / sqrt(1 + pi/8 * 8/pi)).
    np.testing.assert_allclose(member_probabilities(a, b), [[sig(1.0), sig(1 / math.sqrt(2))]], atol=1e-12)
    with pytest.raises(ValueError, match="needs an ensemble"):
        member_probabilities(RewardOutput(torch.zeros(1)), b)


def test_acquisition_picks_the_hand_expected_pairs():
    # MI: 'split' (members at sigmoid(+-3)) > 'lean' (sigmoid(2), 1/2) > 'agree' = 'close' = 0.
    assert select_pairs(RM, POOL, 2, "mutual_information") == [1, 3]
    assert select_pairs(RM, POOL, 2, "variance") == [1, 3]
    # margin: |mean reward gap|: split 0, close 0.2, agree 1, lean 1 (tie: lower index first).
    assert select_pairs(RM, POOL, 3, "margin") == [1, 2, 0]
    # Symmetric: swapping a pair's sides (its label) changes no score.
    swapped = [PairwiseExample(p.prompt, p.rejected, p.chosen) for p in POOL]
    assert select_pairs(RM, swapped, 2, "mutual_information") == [1, 3]
    assert select_pairs(RM, swapped, 3, "margin") == [1, 2, 0]
    first = select_pairs(RM, POOL, 4, "random", seed=0)
    assert sorted(first) == [0, 1, 2, 3] and first == select_pairs(RM, POOL, 4, "random", seed=0)
    with pytest.raises(ValueError, match="needs an ensemble"):
        select_pairs(LookupRM(RM.members, ensemble=False), POOL, 1, "mutual_information")
    with pytest.raises(ValueError, match="method='bald'"):
        select_pairs(RM, POOL, 1, "bald")


def test_top_k_order_ties_and_bounds():
    assert top_k(np.array([1.0, 3.0, 3.0, 0.0]), 2).tolist() == [1, 2]
    for k in (0, 5):
        with pytest.raises(ValueError, match=f"k={k}"):
            top_k(np.zeros(4), k)


def test_pool_loop_acquires_by_margin_and_keeps_the_books():
    # 'aN' has reward N / 10 against 'zero': the smallest margins are the smallest N.
    members = {f"a{n}": [n / 10, n / 10] for n in range(12)}
    pool = [PairwiseExample("p", f"a{n}", "zero") for n in range(12)]
    rm = LookupRM({**members, "zero": [0.0, 0.0]})
    seen, builds = [], []

    def build():
        builds.append(1)
        return rm

    def train(model, labelled):
        seen.append([p.chosen for p in labelled])

    rows = active_learning(build, train, lambda m: {"accuracy": 0.5}, pool, "margin", seed_size=3, acquire=2,
                           rounds=2, seed=0)
    assert [r["n_labels"] for r in rows] == [3, 5, 7] and len(builds) == 3
    seed_set = rows[0]["seed_set"]
    assert seed_set == np.random.default_rng(0).permutation(12)[:3].tolist()
    expected = sorted(set(range(12)) - set(seed_set))[:2]  # the two smallest margins left
    assert rows[0]["acquired"] == expected
    assert seen[1] == [f"a{i}" for i in seed_set + expected]
    labelled = seed_set + rows[0]["acquired"] + rows[1]["acquired"]
    assert len(set(labelled)) == 7 and "acquired" not in rows[2]
    again = active_learning(build, train, lambda m: {}, pool, "random", seed_size=3, acquire=2, rounds=1, seed=0,
                            retrain=False)
    assert again[0]["seed_set"] == seed_set and len(builds) == 4  # same seed set; built once
    with pytest.raises(ValueError, match="13 labels, but the pool has 12"):
        active_learning(build, train, dict, pool, "margin", seed_size=3, acquire=5, rounds=2)


def test_tiny_active_learning_study_writes_its_files(tmp_path):
    from experiments.active_learning import run

    cfg = compose_config(tmp_path, "run", [
        "experiment=active_learning", "+debug=active_learning"])  # 4 + 2 x 4 labels, 4 methods
    out = run(cfg, tmp_path)
    rows = out["rows"]
    assert len(rows) == 4 * 3 and [r["n_labels"] for r in rows[:3]] == [4, 8, 12]
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["train_s"] > 0 for r in rows)
    books = out["acquired"]
    assert len({tuple(b["seed_set"]) for b in books if b["round"] == 0}) == 1  # one seed set for all methods
    with open(tmp_path / "metrics.csv") as f:
        assert len(list(csv.DictReader(f))) == 12
    with open(tmp_path / "curve.csv") as f:
        assert len(list(csv.DictReader(f))) == 4 * 3
    assert json.loads((tmp_path / "metrics.json").read_text())["area_under_curve"][0]["method"] == "random"
    assert "## Area under the curve" in (tmp_path / "results.md").read_text()
    assert Path(tmp_path / "curve.png").stat().st_size > 0

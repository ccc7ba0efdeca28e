"""Active learning for reward models: which unlabelled pairs to send for labelling.

Pool-based active learning (Settles 2009): a model trained on the labels so far scores every
unlabelled pair, the `acquire` pairs it is least sure about are labelled, and it is trained again.
How unsure it is about a pair (a, b), by `method`:

- `mutual_information`: BALD (Houlsby et al. 2011), H(mean_k p_k) - mean_k H(p_k) over an
  ensemble's members' P(a > b): high where the members disagree, not where each is merely unsure;
- `variance`: the variance over members of p_k (ensemble disagreement, a simpler form);
- `margin`: smallest |log-odds of P(a > b)| first (uncertainty sampling, Lewis and Gale 1994), for
  any RM: `rm.preference_logits`, so r_a - r_b for Bradley-Terry RMs and the member-integrated
  log-odds for an ensemble;
- `random`: uniform, the baseline.

Every score is symmetric in a and b, so a pool may hold its pairs as (chosen, rejected) without
the acquisition reading the labels. Legend: b pairs, k ensemble members.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np
import torch
from scipy import special

from nexus.base import RewardModel
from nexus.outputs import RewardOutput
from nexus.data.formats import PairwiseExample
from nexus.losses import probit_preference_logits

METHODS = ("mutual_information", "variance", "margin", "random")
ENSEMBLE_METHODS = ("mutual_information", "variance")


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy in nats of Bernoulli(p), elementwise (0 at p = 0 or 1)."""
    return special.entr(p) + special.entr(1.0 - p)


def member_probabilities(out_a: RewardOutput, out_b: RewardOutput) -> np.ndarray:
    """'b k' each ensemble member's P(a > b): sigmoid of the probit-integrated gap of its Gaussians
    (MacKay 1992; with scalar heads the variances are 0 and this is sigmoid(r_a,k - r_b,k)).

    Raises:
        ValueError: an output without `extras["member_means"]` (not an ensemble).
    """
    for name, out in (("a", out_a), ("b", out_b)):
        if out.extras is None or "member_means" not in out.extras:
            raise ValueError(f"the output of {name} has no extras['member_means']: ensemble disagreement "
                             f"needs an ensemble RM (use method='margin' for any RM)")
    a, b = out_a.extras, out_b.extras
    zero = torch.zeros_like(a["member_means"])
    logits = probit_preference_logits(a["member_means"], a.get("member_vars", zero),
                                      b["member_means"], b.get("member_vars", zero))
    return torch.sigmoid(logits.double()).numpy()


def mutual_information(probs: np.ndarray) -> np.ndarray:
    """'b k' member probabilities -> 'b' BALD score H(mean p) - mean H(p) >= 0 (Houlsby et al. 2011)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be 'b k', got shape {probs.shape}")
    return np.clip(binary_entropy(probs.mean(1)) - binary_entropy(probs).mean(1), 0.0, None)


def probability_variance(probs: np.ndarray) -> np.ndarray:
    """'b k' member probabilities -> 'b' their population variance over members."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be 'b k', got shape {probs.shape}")
    return probs.var(axis=1)


def acquisition_scores(rm: RewardModel, pairs: Sequence[PairwiseExample], method: str,
                       seed: int = 0) -> np.ndarray:
    """'b' how much labelling each pair is worth under `method` (`METHODS`); higher is first.

    Both sides of every pair are scored in one `score` call (raw rewards, no normaliser).
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {METHODS}")
    if not pairs:
        raise ValueError("no pairs to score")
    if method == "random":
        return np.random.default_rng(seed).random(len(pairs))
    prompts = [p.prompt for p in pairs]
    out = rm.score(prompts + prompts, [p.chosen for p in pairs] + [p.rejected for p in pairs], normalize=False)
    n = len(pairs)
    a, b = (RewardOutput(out.rewards[part], extras=None if out.extras is None else
                         {k: v[part] for k, v in out.extras.items()}) for part in (slice(0, n), slice(n, 2 * n)))
    if method == "margin":
        return -rm.preference_logits(a, b).double().abs().numpy()
    probs = member_probabilities(a, b)
    return mutual_information(probs) if method == "mutual_information" else probability_variance(probs)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, highest first; ties go to the lower index."""
    scores = np.asarray(scores, dtype=np.float64)
    if not 0 < k <= scores.size:
        raise ValueError(f"k={k}: expected 1 <= k <= {scores.size} (the number of candidates)")
    return np.argsort(-scores, kind="stable")[:k]


def select_pairs(rm: RewardModel, pool: Sequence[PairwiseExample], k: int, method: str,
                 seed: int = 0) -> list[int]:
    """Indices into `pool` of the `k` pairs to label next under `method`."""
    return top_k(acquisition_scores(rm, pool, method, seed), k).tolist()


def _check_budget(n_pool: int, seed_size: int, acquire: int, rounds: int) -> None:
    for name, value, low in (("seed_size", seed_size, 1), ("acquire", acquire, 1), ("rounds", rounds, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}={value!r}: expected an integer >= {low}")
    if seed_size + rounds * acquire > n_pool:
        raise ValueError(f"seed_size + rounds * acquire = {seed_size + rounds * acquire} labels, but the pool "
                         f"has {n_pool} pairs")


def active_learning(build: Callable[[], RewardModel], train: Callable[[RewardModel, list], None],
                    evaluate: Callable[[RewardModel], dict], pool: Sequence[PairwiseExample], method: str, *,
                    seed_size: int, acquire: int, rounds: int, seed: int = 0, retrain: bool = True) -> list[dict]:
    """Pool-based active learning: a random seed set, then `rounds` of acquiring `acquire` labels.

    Args:
        build: a fresh untrained model (called once, or every round with `retrain`).
        train: trains a model in place on the labelled pairs so far.
        evaluate: held-out metrics of a trained model, e.g. `nexus.evaluation.evaluate_pairwise`.
        pool: the pairs; a pair's orientation is its label, read only once it is acquired.
        retrain: train a fresh model each round on all labels (no warm-start bias, Ash and Adams
            2020); else keep training the same model on all labels so far.
        seed: draws the seed set (the same for every method) and the `random` scores.

    Returns:
        One row per round: round, n_labels, the metrics, train_s, acquire_s, and `acquired`
        (pool indices labelled after that round; the seed set's in row 0's `seed_set`).
    """
    _check_budget(len(pool), seed_size, acquire, rounds)
    labelled = np.random.default_rng(seed).permutation(len(pool))[:seed_size].tolist()
    rows, model = [], None
    for r in range(rounds + 1):
        model = build() if retrain or model is None else model
        start = time.perf_counter()
        train(model, [pool[i] for i in labelled])
        train_s = time.perf_counter() - start
        row = {"method": method, "seed": seed, "round": r, "n_labels": len(labelled),
               **evaluate(model.eval()), "train_s": train_s}
        if r == 0:
            row["seed_set"] = list(labelled)
        if r < rounds:
            start = time.perf_counter()
            unlabelled = np.setdiff1d(np.arange(len(pool)), labelled)
            picked = select_pairs(model, [pool[i] for i in unlabelled], acquire, method, seed=seed * 1000 + r)
            row["acquired"] = unlabelled[picked].tolist()
            row["acquire_s"] = time.perf_counter() - start
            labelled += row["acquired"]
        rows.append(row)
    return rows

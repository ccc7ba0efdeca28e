"""The ensemble RM (issue 3, form (a)): members, uncertainty, aggregation, compare, training, save/load."""

from __future__ import annotations

import math

import pytest
import torch

import nexus
from nexus.backbones import load_backbone
from nexus.data.collators import PairwiseCollator, bootstrap_weights
from nexus.evaluation import evaluate_pairwise
from nexus.losses import probit_preference_logits, weighted_preference_loss
from nexus.models.ensemble import EnsembleRewardModel, aggregate
from nexus.training import RewardTrainer, RewardTrainingArguments
from tests.test_training import keyword_pairs


def make(head="scalar", k=3, **kwargs) -> EnsembleRewardModel:
    return EnsembleRewardModel(load_backbone("tiny-llama"), n_members=k, head=head, head_hidden=16, **kwargs).eval()


def test_aggregations_by_hand():
    means = torch.tensor([[1.0, 3.0], [-2.0, 0.0]])
    total = torch.tensor([4.0, 9.0])
    assert aggregate(means, total, "mean", 1.0, 1.0).tolist() == [2.0, -1.0]
    assert aggregate(means, total, "min", 1.0, 1.0).tolist() == [1.0, -2.0]
    assert aggregate(means, total, "uwo", 0.5, 1.0).tolist() == [1.5, -1.5]  # member variance is 1
    assert aggregate(means, total, "lcb", 1.0, 2.0).tolist() == [-2.0, -7.0]
    with pytest.raises(ValueError, match="aggregation='median'"):
        aggregate(means, total, "median", 1.0, 1.0)


def test_probit_logits_match_monte_carlo():
    torch.manual_seed(0)
    mean_a, var_a, mean_b, var_b = 1.0, 2.0, -0.5, 1.0
    samples = (mean_a + math.sqrt(var_a) * torch.randn(400_000)) - (mean_b + math.sqrt(var_b) * torch.randn(400_000))
    exact = torch.sigmoid(samples).mean()
    approx = torch.sigmoid(probit_preference_logits(*map(torch.tensor, (mean_a, var_a, mean_b, var_b))))
    assert abs(approx - exact) < 0.01 and approx < torch.sigmoid(torch.tensor(1.5)) - 0.05


def test_weighted_preference_loss_by_hand():
    logits = torch.tensor([[2.0, -1.0], [0.0, 3.0]])
    nll = -torch.nn.functional.logsigmoid(logits)
    torch.testing.assert_close(weighted_preference_loss(logits), nll.mean())
    weights = torch.tensor([[1.0, 0.0], [2.0, 1.0]])  # member 1 never sees pair 0
    expected = ((nll[0, 0] + 2 * nll[1, 0]) / 3 + nll[1, 1]) / 2
    torch.testing.assert_close(weighted_preference_loss(logits, weights), expected)
    smoothed = weighted_preference_loss(logits, None, 0.1)
    torch.testing.assert_close(smoothed, (0.9 * nll - 0.1 * torch.nn.functional.logsigmoid(-logits)).mean())


def test_bootstrap_weights_are_fixed_per_pair_and_differ_per_member():
    pairs = keyword_pairs(400, seed=0)
    w = bootstrap_weights(pairs, 4, seed=0)
    assert w.shape == (400, 4) and torch.equal(w, bootstrap_weights(pairs, 4, seed=0))
    assert not torch.equal(w, bootstrap_weights(pairs, 4, seed=1))
    assert abs(w.mean().item() - 1.0) < 0.1 and (w == 0).float().mean() > 0.25  # Poisson(1): P(0) = 0.37
    assert not torch.equal(w[:, 0], w[:, 1])
    batch = PairwiseCollator(load_backbone("tiny-gpt2"), bootstrap_members=4)(pairs[:5])
    torch.testing.assert_close(batch["member_weights"], w[:5])


@pytest.mark.parametrize("head", ["scalar", "gaussian"])
def test_score_reports_uncertainty_parts_in_input_order(head, mixed_inputs):
    prompts, responses = mixed_inputs
    rm = make(head, prior_scale=0.5)
    out = rm.score(prompts, responses, batch_size=2)
    ex = out.extras
    assert ex["member_means"].shape == (len(prompts), 3)
    torch.testing.assert_close(ex["epistemic_var"], ex["member_means"].var(-1, unbiased=False))
    torch.testing.assert_close(out.uncertainty, (ex["epistemic_var"] + ex["aleatoric_var"]).sqrt())
    assert (ex["aleatoric_var"] > 0).all() if head == "gaussian" else (ex["aleatoric_var"] == 0).all()
    single = torch.cat([rm.score([p], [r]).extras["member_means"] for p, r in zip(prompts, responses)])
    torch.testing.assert_close(ex["member_means"], single, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.rewards, ex["member_means"].mean(-1))


def test_compare_integrates_over_members(mixed_inputs):
    prompts, responses = mixed_inputs
    other = list(reversed(responses))
    rm = make("gaussian")
    a, b = rm.score(prompts, responses).extras, rm.score(prompts, other).extras
    z = (a["member_means"] - b["member_means"]) / torch.sqrt(1 + math.pi / 8 * (a["member_vars"] + b["member_vars"]))
    torch.testing.assert_close(rm.compare(prompts, responses, other), torch.sigmoid(z).mean(-1))


@pytest.mark.parametrize("head", ["scalar", "gaussian"])
def test_save_and_load_round_trip(tmp_path, head, mixed_inputs):
    prompts, responses = mixed_inputs
    rm = make(head, prior_scale=1.0, aggregation="uwo")
    loaded = nexus.load(rm.save_pretrained(tmp_path / "ens"))
    assert isinstance(loaded, EnsembleRewardModel) and loaded.aggregation == "uwo"
    want, got = rm.score(prompts, responses), loaded.score(prompts, responses)
    torch.testing.assert_close(got.rewards, want.rewards, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.uncertainty, want.uncertainty, atol=1e-5, rtol=0)


def test_members_start_different_and_all_learn(tmp_path):
    torch.manual_seed(0)
    rm = EnsembleRewardModel(load_backbone("tiny-gpt2"), n_members=3, head="gaussian", head_hidden=16)
    held_out = keyword_pairs(100, seed=1)
    args = RewardTrainingArguments(output_dir=str(tmp_path), max_steps=60, per_device_train_batch_size=16,
                                   learning_rate=3e-3, save_strategy="no", seed=0, disable_tqdm=True, use_cpu=True)
    trainer = RewardTrainer(model=rm, args=args, train_dataset=keyword_pairs(400, seed=0))
    before = rm.score(["a"], ["x yes"]).extras["member_means"][0]
    assert before.unique().numel() == 3
    trainer.train()
    assert evaluate_pairwise(rm, held_out)["accuracy"] >= 0.95
    prompts = [p.prompt for p in held_out]
    chosen = rm.score(prompts, [p.chosen for p in held_out]).extras["member_means"]
    rejected = rm.score(prompts, [p.rejected for p in held_out]).extras["member_means"]
    member_accuracy = (chosen > rejected).float().mean(0)
    assert (member_accuracy >= 0.9).all(), member_accuracy

"""The ensemble RM (shared-backbone form): members, uncertainty, aggregation, compare, training, save/load."""

from __future__ import annotations

import math

import pytest
import torch

import nexus
from nexus.backbones import load_backbone
from nexus.data.collators import PairwiseCollator, bootstrap_weights
from nexus.evaluation import evaluate_pairwise
from nexus.losses import probit_preference_logits, weighted_preference_loss
from nexus.models.ensemble import EnsembleRewardModel, FeatureBank, aggregate
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


def lora_backbone():
    return load_backbone("tiny-llama", lora={"r": 4, "alpha": 8})


@pytest.mark.parametrize("form", ["lora", "independent"])
def test_member_forms_score_and_round_trip(tmp_path, form, mixed_inputs):
    prompts, responses = mixed_inputs
    backbone = lora_backbone() if form == "lora" else load_backbone("tiny-llama")
    rm = EnsembleRewardModel(backbone, n_members=3, form=form, head="gaussian", head_hidden=16).eval()
    if form == "independent":  # copies of one pretrained model, each trained on its own
        assert len(rm.backbones) == 3 and rm.backbones[1].model is not rm.backbones[0].model
    else:  # one frozen base, three adapters
        assert len(rm.backbones) == 1 and set(rm.backbone.model.peft_config) == {"default", "member1", "member2"}
    out = rm.score(prompts, responses)
    assert out.extras["member_means"].shape == (len(prompts), 3)
    torch.testing.assert_close(out.uncertainty, (out.extras["epistemic_var"] + out.extras["aleatoric_var"]).sqrt())
    loaded = nexus.load(rm.save_pretrained(tmp_path / form))
    assert loaded.form == form
    torch.testing.assert_close(loaded.score(prompts, responses).extras["member_means"], out.extras["member_means"],
                               atol=1e-5, rtol=0)


def test_lora_members_differ_and_all_get_gradients():
    rm = EnsembleRewardModel(lora_backbone(), n_members=3, form="lora", head_hidden=16)
    for name in rm.adapter_names:  # B starts at zero in LoRA; make the adapters act
        for param_name, param in rm.backbone.model.named_parameters():
            if f"lora_B.{name}." in param_name:
                torch.nn.init.normal_(param, std=0.1)
    batch = rm.backbone.encode(["1 + 2"] * 2, ["1 + 2 = 3", "1 + 2 = 4"])
    features = rm.member_features(**batch)
    assert not torch.allclose(features[0], features[1])  # each adapter changes the base differently
    rm(**batch)[..., 0].sum().backward()
    grads = {name: 0.0 for name in rm.adapter_names}
    for param_name, param in rm.backbone.model.named_parameters():
        for name in grads:
            if f".{name}." in param_name:
                assert param.grad is not None, param_name
                grads[name] += param.grad.abs().sum().item()
    assert all(g > 0 for g in grads.values()), grads
    base = [p for n, p in rm.backbone.model.named_parameters() if "lora_" not in n]
    assert base and all(not p.requires_grad for p in base)  # the base model stays frozen


def test_pretrain_seed_members_load_each_backbone(tmp_path, mixed_inputs):
    prompts, responses = mixed_inputs
    rm = EnsembleRewardModel(load_backbone("tiny-gpt2"), n_members=2, form="independent",
                             member_backbones=["tiny-gpt2", "tiny-gpt2"], seed=3, head_hidden=16).eval()
    w0, w1 = (m.model.get_input_embeddings().weight for m in rm.backbones)
    assert not torch.equal(w0, w1)  # differently seeded "pretrained" models
    loaded = nexus.load(rm.save_pretrained(tmp_path / "ens"))
    assert loaded.member_backbones == ["tiny-gpt2", "tiny-gpt2"]
    torch.testing.assert_close(loaded.score(prompts, responses).rewards, rm.score(prompts, responses).rewards,
                               atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="member_backbones"):
        EnsembleRewardModel(load_backbone("tiny-gpt2"), n_members=3, member_backbones=["tiny-gpt2"] * 3)
    with pytest.raises(ValueError, match="form='lora' needs a backbone loaded with LoRA"):
        EnsembleRewardModel(load_backbone("tiny-gpt2"), form="lora")


def test_feature_bank_penalises_reward_gaps_of_near_identical_features():
    bank = FeatureBank(size=4, threshold=0.99)
    f = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # 'b k d', k = 1
    assert bank.consistency(f, torch.tensor([[1.0], [2.0]])).item() == 0.0  # empty bank
    bank.push(f, torch.tensor([[1.0], [2.0]]))
    query = torch.tensor([[[2.0, 0.0]], [[1.0, 1.0]]])  # row 0 is parallel to stored row 0; row 1 near neither
    penalty = bank.consistency(query, torch.tensor([[4.0], [0.0]]))
    assert penalty.item() == pytest.approx(9.0)  # (4 - 1)^2 over one near neighbour
    bank.push(torch.ones(6, 1, 2), torch.zeros(6, 1))  # more than the bank holds: keeps the newest 4
    assert bank.filled == 4 and torch.equal(bank.rewards, torch.zeros(4, 1))


def test_training_with_feature_bank_adds_the_penalty(tmp_path):
    torch.manual_seed(0)
    rm = EnsembleRewardModel(load_backbone("tiny-gpt2"), n_members=2, head_hidden=16, consistency_weight=1.0,
                             consistency_threshold=0.9, bank_size=64)
    args = RewardTrainingArguments(output_dir=str(tmp_path), max_steps=20, per_device_train_batch_size=16,
                                   learning_rate=3e-3, save_strategy="no", seed=0, disable_tqdm=True, use_cpu=True)
    RewardTrainer(model=rm, args=args, train_dataset=keyword_pairs(200, seed=0)).train()
    assert rm.bank.filled == 64 and rm.aux_loss is not None and rm.aux_loss.item() > 0
    rm.eval()
    rm.score(["a"], ["b"])
    assert rm.aux_loss is None  # inference never touches the bank


def test_loading_never_reloads_member_backbones_by_name(tmp_path, monkeypatch):
    import nexus.models.ensemble as ensemble_module

    rm = EnsembleRewardModel(load_backbone("tiny-gpt2"), n_members=1, form="independent",
                             member_backbones=["tiny-gpt2"], head_hidden=16).eval()
    path = rm.save_pretrained(tmp_path / "one")

    def refuse(*args, **kwargs):
        raise AssertionError("load_backbone called while loading a checkpoint")

    monkeypatch.setattr(ensemble_module, "load_backbone", refuse)
    loaded = nexus.load(path)
    torch.testing.assert_close(loaded.score(["q"], ["a"]).rewards, rm.score(["q"], ["a"]).rewards)

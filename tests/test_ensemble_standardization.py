"""The ensemble RM's member standardisation on a reference set, and its fixed random priors."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors import safe_open

import nexus
from nexus.backbones import load_backbone
from nexus.models.ensemble import AGGREGATIONS, EnsembleRewardModel, aggregate, standardize
from nexus.training import RewardTrainer, RewardTrainingArguments
from tests.test_training import keyword_pairs

REFERENCE = keyword_pairs(12, seed=3)
REF_PROMPTS = [p.prompt for p in REFERENCE] * 2
REF_RESPONSES = [p.chosen for p in REFERENCE] + [p.rejected for p in REFERENCE]


def make(head="gaussian", k=3, **kwargs) -> EnsembleRewardModel:
    torch.manual_seed(0)
    return EnsembleRewardModel(load_backbone("tiny-gpt2"), n_members=k, head=head, head_hidden=16, **kwargs).eval()


def every_output(rm: EnsembleRewardModel, prompts, responses) -> dict[str, torch.Tensor]:
    """Rewards under each aggregation, the epistemic variance, the uncertainty and compare."""
    outputs = {}
    for how in AGGREGATIONS:
        rm.aggregation = how
        outputs[how] = rm.score(prompts, responses).rewards
    out = rm.score(prompts, responses)
    outputs.update(epistemic=out.extras["epistemic_var"], uncertainty=out.uncertainty,
                   compare=rm.compare(prompts, responses, list(reversed(responses))))
    rm.aggregation = "mean"
    return outputs


def shift_and_scale_member(rm: EnsembleRewardModel, member: int, shift: float, scale: float) -> None:
    """Make one Gaussian member's mean scale * m + shift (and its variance scale^2 times larger)."""
    last = rm.heads[member].net[-1]
    with torch.no_grad():
        last.weight[0] *= scale
        last.bias[0] = last.bias[0] * scale + shift
        last.bias[1] += math.log(scale**2)  # the log-variance row


def test_standardize_by_hand_makes_worst_case_ignore_a_members_offset():
    m1, m2 = torch.tensor([0.0, 3.0]), torch.tensor([3.0, 0.0])  # two candidates
    zero = torch.zeros(2, 2)
    picks = []
    for offset in (10.0, -10.0):
        means = torch.stack([m1, m2 + offset], dim=1)  # 'b k'
        picks.append(aggregate(means, zero.sum(1), "min", 1.0, 1.0).argmax().item())
        fitted = standardize(means, zero, means.mean(0), means.std(0, unbiased=False))
        torch.testing.assert_close(fitted[..., 0], torch.tensor([[-1.0, 1.0], [1.0, -1.0]]))
    assert picks == [1, 0]  # raw WCO follows the arbitrary offset of member 2
    out = standardize(torch.tensor([[5.0, 1.0]]), torch.tensor([[4.0, 9.0]]), torch.tensor([1.0, 1.0]),
                      torch.tensor([2.0, 3.0]))
    torch.testing.assert_close(out, torch.tensor([[[2.0, 1.0], [0.0, 1.0]]]))


def test_standardized_outputs_are_invariant_to_a_members_shift_and_scale(mixed_inputs):
    prompts, responses = mixed_inputs
    rm = make()  # no prior: the head edit below is then an affine map of the member
    raw_before = every_output(rm, prompts, responses)
    shift, scale = rm.standardize_members(REF_PROMPTS, REF_RESPONSES)
    assert rm.reference_size == 24 and (scale > 0).all() and not torch.equal(shift, torch.zeros(3))
    fitted = rm.score(REF_PROMPTS, REF_RESPONSES).extras["member_means"]
    torch.testing.assert_close(fitted.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(fitted.std(0, unbiased=False), torch.ones(3), atol=1e-5, rtol=0)
    before = every_output(rm, prompts, responses)
    batch = rm.backbone.encode(prompts, responses)
    forward_before = rm(**batch)

    shift_and_scale_member(rm, 1, shift=10.0, scale=3.0)
    raw_after = every_output(rm, prompts, responses)  # still the old standardisation: outputs move
    for name in ("min", "uwo", "lcb", "epistemic"):
        assert not torch.allclose(raw_after[name], before[name], atol=1e-3), name
    rm.standardize_members(REF_PROMPTS, REF_RESPONSES)
    after = every_output(rm, prompts, responses)
    for name, value in before.items():
        torch.testing.assert_close(after[name], value, atol=1e-5, rtol=1e-5, msg=name)
    assert not torch.allclose(before["min"], raw_before["min"], atol=1e-3)  # it did change the raw outputs
    member_0 = rm(**batch)[:, 0]  # forward (what training reads) stays raw
    torch.testing.assert_close(member_0, forward_before[:, 0])


def test_standardization_survives_save_and_load_and_old_checkpoints_load_as_identity(tmp_path, mixed_inputs):
    prompts, responses = mixed_inputs
    rm = make(aggregation="uwo")
    raw = rm.score(prompts, responses)
    plain = rm.save_pretrained(tmp_path / "plain")
    with safe_open(str(plain / "model.safetensors"), "pt") as f:
        assert "member_shift" not in f.keys()
    config = json.loads((plain / "config.json").read_text())
    del config["reference_size"]  # as written before standardisation existed
    (plain / "config.json").write_text(json.dumps(config))
    old = nexus.load(plain)
    assert old.reference_size == 0 and torch.equal(old.member_scale, torch.ones(3))
    torch.testing.assert_close(old.score(prompts, responses).rewards, raw.rewards, atol=1e-5, rtol=0)

    rm.standardize_members(REF_PROMPTS, REF_RESPONSES)
    want = rm.score(prompts, responses)
    assert not torch.allclose(want.rewards, raw.rewards, atol=1e-3)
    fitted = rm.save_pretrained(tmp_path / "fitted")
    assert json.loads((fitted / "config.json").read_text())["reference_size"] == 24
    loaded = nexus.load(fitted)
    torch.testing.assert_close(loaded.member_shift, rm.member_shift)
    torch.testing.assert_close(loaded.score(prompts, responses).rewards, want.rewards, atol=1e-5, rtol=0)
    torch.testing.assert_close(loaded.score(prompts, responses).uncertainty, want.uncertainty, atol=1e-5, rtol=0)


def test_standardize_refuses_a_tiny_set_or_a_constant_member():
    rm = make("scalar")
    shift, scale = rm.standardize_members(REF_PROMPTS, REF_RESPONSES)
    with pytest.raises(ValueError, match="1 reference input.*at least 2"):
        rm.standardize_members(["q"], ["a"])
    with torch.no_grad():  # member 2 ignores its input
        rm.heads[2].net[-1].weight.zero_()
    with pytest.raises(ValueError, match="member 2 gives all 24 reference inputs the same reward"):
        rm.standardize_members(REF_PROMPTS, REF_RESPONSES)
    assert rm.reference_size == 24 and torch.equal(rm.member_shift, shift)  # the previous fit is kept
    with pytest.raises(ValueError, match="member 0 gives all 2"):
        rm.standardize_members(["q", "q"], ["a", "a"])
    with pytest.raises(ValueError, match="reference_size=1"):
        EnsembleRewardModel(load_backbone("tiny-gpt2"), n_members=2, reference_size=1)


def test_priors_are_fixed_functions_of_the_input_through_training_and_save(tmp_path, mixed_inputs):
    prompts, responses = mixed_inputs
    rm = make("scalar", prior_scale=1.0)
    batch = rm.backbone.encode(prompts, responses)
    prior = rm.prior_outputs(**batch)
    assert prior.shape == (len(prompts), 3) and prior[:, 0].ne(prior[:, 1]).all()  # one function per member
    embedding = rm.backbone.model.get_input_embeddings().weight.detach().clone()
    args = RewardTrainingArguments(output_dir=str(tmp_path), max_steps=5, per_device_train_batch_size=8,
                                   learning_rate=1e-2, save_strategy="no", seed=0, disable_tqdm=True, use_cpu=True)
    RewardTrainer(model=rm.train(), args=args, train_dataset=keyword_pairs(40, seed=0)).train()
    rm.eval()
    assert not torch.equal(rm.backbone.model.get_input_embeddings().weight, embedding)  # the backbone learned
    assert torch.equal(rm.prior_outputs(**batch), prior)
    loaded = nexus.load(rm.save_pretrained(tmp_path / "ens"))
    assert torch.equal(loaded.prior_outputs(**batch), prior)
    torch.testing.assert_close(loaded(**batch), rm(**batch), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="no priors"):
        make("scalar").prior_outputs(**batch)

"""The public interface: score ordering and batching, validation, compare, save/load."""

from __future__ import annotations

import json

import pytest
import torch

import nexus
from nexus.backbones import load_backbone
from nexus.models.scalar import ScalarRewardModel


def one_by_one(rm, prompts, responses):
    return torch.cat([rm.score([p], [r]).rewards for p, r in zip(prompts, responses)])


def test_score_returns_input_order_for_mixed_lengths(scalar_rm, mixed_inputs):
    prompts, responses = mixed_inputs
    batched = scalar_rm.score(prompts, responses, batch_size=2).rewards
    single = one_by_one(scalar_rm, prompts, responses)
    assert batched.shape == (len(prompts),)
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)
    # Distinct inputs give distinct rewards, so an order bug cannot hide behind equal values.
    assert len(set(batched.round(decimals=5).tolist())) == len(prompts)


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama", "tiny-bert"])
def test_left_and_right_padding_agree(name, mixed_inputs):
    prompts, responses = mixed_inputs
    torch.manual_seed(0)
    rm = ScalarRewardModel(load_backbone(name), head_hidden=8, dropout=0.0)
    right = rm.score(prompts, responses, batch_size=5).rewards
    rm.backbone.padding_side = "left"
    left = rm.score(prompts, responses, batch_size=5).rewards
    torch.testing.assert_close(left, right, atol=1e-5, rtol=0)


def test_pad_equal_to_eos_pools_the_last_real_token(mixed_inputs):
    prompts, responses = mixed_inputs
    torch.manual_seed(0)
    rm = ScalarRewardModel(load_backbone("tiny-llama"), head_hidden=8, dropout=0.0)
    reference = one_by_one(rm, prompts, responses)
    rm.backbone.tokenizer.pad_token = rm.backbone.tokenizer.eos_token  # pad id == eos id
    torch.testing.assert_close(rm.score(prompts, responses).rewards, reference, atol=1e-5, rtol=0)


def test_empty_response_gets_a_finite_score(scalar_rm):
    assert torch.isfinite(scalar_rm.score(["2 + 2"], [""]).rewards).all()


@pytest.mark.parametrize(
    "prompts, responses, message",
    [
        (["a", "b"], ["x"], "length mismatch: 2 prompts but 1 responses"),
        (["a", "b"], ["x", 3], r"responses\[1\] is int"),
        (["a", None], ["x", "y"], r"prompts\[1\] is NoneType"),
        ([], [], "prompts is empty"),
        ("abc", ["x", "y", "z"], "prompts must be a sequence"),
    ],
)
def test_bad_input_names_the_problem(scalar_rm, prompts, responses, message):
    with pytest.raises(ValueError, match=message):
        scalar_rm.score(prompts, responses)


def test_compare_is_bradley_terry(scalar_rm, mixed_inputs):
    prompts, responses = mixed_inputs
    other = list(reversed(responses))
    expected = torch.sigmoid(scalar_rm.score(prompts, responses).rewards - scalar_rm.score(prompts, other).rewards)
    torch.testing.assert_close(scalar_rm.compare(prompts, responses, other), expected)


@pytest.mark.parametrize("lora", [None, {"r": 4, "alpha": 8}])
def test_save_and_load_round_trip(tmp_path, mixed_inputs, lora):
    prompts, responses = mixed_inputs
    torch.manual_seed(0)
    rm = ScalarRewardModel(load_backbone("tiny-llama", lora=lora), head_hidden=8, dropout=0.0)
    with torch.no_grad():  # LoRA's B starts at zero; move it so the adapters matter
        for name, param in rm.named_parameters():
            if "lora_B" in name:
                param.normal_()
    path = rm.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in path.iterdir()) == ["backbone", "config.json", "model.safetensors"]
    assert not list(tmp_path.glob(".ckpt.tmp-*")), "temporary directory left behind"
    loaded = nexus.load(path)
    assert isinstance(loaded, ScalarRewardModel)
    torch.testing.assert_close(loaded.score(prompts, responses).rewards, rm.score(prompts, responses).rewards,
                               atol=1e-5, rtol=0)
    # Saving again over an existing checkpoint replaces it whole (with overwrite=True).
    rm.save_pretrained(path, overwrite=True)
    assert json.loads((path / "config.json").read_text())["model_type"] == "scalar"


def test_lora_trains_only_adapters_and_head():
    rm = ScalarRewardModel(load_backbone("tiny-gpt2", lora={"r": 4}), head_hidden=8)
    trainable = {n for n, p in rm.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)
    assert any(n.startswith("head.") for n in trainable)


def test_load_errors_name_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        nexus.load(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "nope"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="unknown model_type 'nope'; known: .*scalar"):
        nexus.load(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": \n')
    with pytest.raises(ValueError, match=r"config.json:\d+: malformed JSON"):
        nexus.load(tmp_path)


def test_calibrate_fits_a_temperature_that_is_saved_and_used_by_compare(tmp_path, scalar_rm):
    prompts = [f"q{i}" for i in range(40)]
    chosen, rejected = [f"answer {i}" for i in range(40)], [f"other {i * 7}" for i in range(40)]
    with torch.no_grad():  # a random head: scale it up so the model is overconfident
        for p in scalar_rm.head.parameters():
            p.mul_(4.0)
    logits = scalar_rm.score(prompts, chosen).rewards - scalar_rm.score(prompts, rejected).rewards
    temperature = scalar_rm.calibrate(prompts, chosen, rejected)
    assert temperature > 1.0  # overconfident at random: the fit must soften it
    after = scalar_rm.compare(prompts, chosen, rejected)
    torch.testing.assert_close(after, torch.sigmoid(logits / temperature), atol=1e-6, rtol=0)
    loaded = nexus.load(scalar_rm.save_pretrained(tmp_path / "rm"))
    assert float(loaded.temperature) == pytest.approx(temperature)
    torch.testing.assert_close(loaded.compare(prompts, chosen, rejected), after, atol=1e-5, rtol=0)

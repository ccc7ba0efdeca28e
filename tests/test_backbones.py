"""Backbones: tiny configs, the byte tokenizer, pooling, truncation, name resolution."""

from __future__ import annotations

import pytest
import torch

from nexus.backbones import Backbone, load_backbone
from nexus.backbones.pooling import last_token_index, last_token_pool, mean_pool
from nexus.backbones.tokenizer import build_byte_tokenizer


def test_byte_tokenizer_is_lossless():
    tok = build_byte_tokenizer()
    text = "(23 + 17) * 4 - 9\n23 + 17 = 40\tünïcødé ✓ 🙂"
    ids = tok(text)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == text
    assert len(tok("12 + 3")["input_ids"]) == 6  # one token per ASCII character


def test_last_token_index_reads_the_mask():
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 0, 0, 0, 0]])
    assert last_token_index(mask).tolist() == [2, 4, 0]
    hidden = torch.arange(3 * 5 * 2, dtype=torch.float32).reshape(3, 5, 2)
    assert last_token_pool(hidden, mask).tolist() == [[4.0, 5.0], [18.0, 19.0], [20.0, 21.0]]


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [4.0], [6.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert mean_pool(hidden, mask).squeeze(-1).tolist() == [2.0, 4.0]


@pytest.mark.parametrize("name, pooling", [("tiny-gpt2", "last"), ("tiny-llama", "last"), ("tiny-bert", "mean")])
def test_tiny_backbones(name, pooling):
    bb = load_backbone(name)
    assert bb.pooling == pooling and bb.hidden_size == 64
    feats = bb(**bb.encode(["1 + 1", "2 + 2"], ["1 + 1 = 2", "2 + 2 = 5"]))
    assert feats.shape == (2, 64) and torch.isfinite(feats).all()
    assert not torch.allclose(feats[0], feats[1])


def test_tiny_backbones_are_seeded():
    a, b, c = load_backbone("tiny-gpt2", seed=1), load_backbone("tiny-gpt2", seed=1), load_backbone("tiny-gpt2", seed=2)
    wa, wb, wc = (next(m.parameters()) for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_decoder_input_ends_with_eos():
    bb = load_backbone("tiny-gpt2")
    ids = bb.token_ids(["2 + 2"], ["2 + 2 = 4"])[0]
    assert ids[-1] == bb.tokenizer.eos_token_id
    assert bb.tokenizer.decode(ids[:-1]) == "2 + 2\n\n2 + 2 = 4"


def test_truncation_cuts_the_left_and_warns_with_counts():
    bb = load_backbone("tiny-gpt2", max_length=8)
    with pytest.warns(UserWarning, match=r"1 of 2 inputs exceed max_length=8 tokens \(longest 15\)"):
        batch = bb.encode(["a", "1 + 2 + 3"], ["b", "= 6"])
    ids = batch["input_ids"][1].tolist()
    assert len(ids) == 8 and ids[-1] == bb.tokenizer.eos_token_id
    assert bb.tokenizer.decode(ids[:-1]) == " 3\n\n= 6"


def test_unknown_backbone_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown backbone 'gpt-5'.*tiny-gpt2.*not a local directory"):
        load_backbone("gpt-5")
    with pytest.raises(ValueError, match="has no config.json"):
        load_backbone(str(tmp_path))


def test_local_directory_backbone_loads_offline(tmp_path):
    bb = load_backbone("tiny-llama", seed=3)
    bb.model.save_pretrained(tmp_path)
    bb.tokenizer.save_pretrained(tmp_path)
    again = load_backbone(str(tmp_path))
    inputs = bb.encode(["x"], ["y"])
    torch.testing.assert_close(again(**inputs), bb(**inputs))


def test_token_logprob_stats_by_hand():
    from nexus.backbones.logprobs import token_logprob_stats

    # vocab 2; row 0 reads tokens [0, 1, 1] (all attended), row 1 reads [1, 0] then a pad.
    logits = torch.zeros(2, 3, 2)
    logits[0, 0] = torch.tensor([0.0, 2.0])  # predicts token 1 (p = sigmoid(2))
    logits[0, 1] = torch.tensor([3.0, 0.0])  # predicts token 0, but 1 comes
    ids = torch.tensor([[0, 1, 1], [1, 0, 0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    stats = token_logprob_stats(logits, ids, mask)
    lp_a, lp_b = torch.log(torch.sigmoid(torch.tensor(2.0))), torch.log(torch.sigmoid(torch.tensor(-3.0)))
    torch.testing.assert_close(stats[0], torch.stack([(lp_a + lp_b) / 2, lp_b]))
    torch.testing.assert_close(stats[1], torch.tensor([torch.log(torch.tensor(0.5))] * 2))


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_lm_logprob_features_are_padding_invariant(name):
    bb = load_backbone(name, lm_logprobs=True).eval()  # eval: GPT-2 has dropout
    assert bb.feature_size == bb.hidden_size + 2
    prompts, responses = ["1 + 2", "3 - 4 + 5 - 1"], ["1 + 2 = 3", "3 - 4 = -1\n-1 + 5 = 4\n4 - 1 = 3"]
    right = bb(**bb.encode(prompts, responses))
    bb.padding_side = "left"
    torch.testing.assert_close(bb(**bb.encode(prompts, responses)), right, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="lm_logprobs=True needs a decoder"):
        load_backbone("tiny-bert", lm_logprobs=True)


def test_lm_head_loads_the_head_without_appending_log_likelihood_features(tmp_path):
    bare, headed = load_backbone("tiny-llama").eval(), load_backbone("tiny-llama", lm_head=True).eval()
    assert (bare.has_lm_head, headed.has_lm_head, headed.lm_logprobs) == (False, True, False)
    assert headed.feature_size == headed.hidden_size
    headed.model.base_model.load_state_dict(bare.model.state_dict())
    batch = bare.encode(["1 + 2"], ["1 + 2 = 3"])
    torch.testing.assert_close(headed(**batch), bare(**batch), atol=1e-6, rtol=0)
    spec = headed.spec()
    assert (spec["lm_head"], spec["lm_logprobs"]) == (True, False)
    headed.save_architecture(tmp_path)
    assert Backbone.from_architecture(tmp_path, spec).has_lm_head
    assert not Backbone.from_architecture(tmp_path, bare.spec()).has_lm_head


@pytest.mark.parametrize("name, groups", [
    ("arith-lm", (None, None)), ("arith-lm@shifted", (None, "shifted")),
    ("arith-lm-s3", ("3", None)), ("arith-lm-s12@shifted_ops", ("12", "shifted_ops")),
])
def test_task_lm_names_carry_seed_and_split(name, groups):
    from nexus.tasks.arithmetic.task_lm import ARITH_LM_NAME

    assert ARITH_LM_NAME.fullmatch(name).groups() == groups
    assert ARITH_LM_NAME.fullmatch("arith-lm-sx") is None and ARITH_LM_NAME.fullmatch("arith-lm@") is None


def test_lora_from_a_hydra_config_saves_and_loads(tmp_path, mixed_inputs):
    """Hydra passes `lora` as a DictConfig (with ListConfig values): it must become a plain spec."""
    from omegaconf import OmegaConf

    import nexus
    from nexus.models.scalar import ScalarRewardModel

    lora = OmegaConf.create({"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["c_attn"]})
    rm = ScalarRewardModel(load_backbone("tiny-gpt2", lora=lora), head_hidden=8, dropout=0.0).eval()
    assert rm.backbone.lora.target_modules == ["c_attn"] and type(rm.backbone.lora.target_modules) is list
    path = rm.save_pretrained(tmp_path / "rm")
    torch.testing.assert_close(nexus.load(path).score(*mixed_inputs).rewards, rm.score(*mixed_inputs).rewards)

"""Every family behind the same interface: saved normalisers load back, evaluation and `compare`
agree on the preference probability, and every documented `score` option works on every family."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

import nexus
from nexus.backbones import load_backbone
from nexus.data.formats import PairwiseExample
from nexus.evaluation import score_pairs
from nexus.models.hybrid import HybridRewardModel
from nexus.normalize import BatchStandardize, Chain, Clip, FixedStandardize, RunningStandardize

CONF = Path(__file__).resolve().parents[1] / "experiments" / "conf" / "model"
FAMILIES = sorted(p.stem for p in CONF.glob("*.yaml"))
PROMPTS = ["1 + 2", "3 + 4 - 5", "9 - 1", "2 * 3", "7 + 7", "8 - 2"]
RESPONSES = ["1 + 2 = 3", "3 + 4 = 7\n7 - 5 = 2", "9 - 1 = 8", "2 * 3 = 5", "", "8 - 2 = 6 and more words"]


def build(family: str):
    """The family as its YAML describes it, on the tiny GPT-2 backbone (rules take none)."""
    cfg = OmegaConf.create({"seed": 0, "model": OmegaConf.load(CONF / f"{family}.yaml")})
    torch.manual_seed(0)
    return instantiate(cfg.model, backbone=load_backbone("tiny-gpt2")).eval()


def normalizers():
    return {"batch": BatchStandardize(), "clip": Clip(-0.05, 0.05), "fixed": FixedStandardize(0.1, 2.0),
            "running": RunningStandardize(update=True),
            "chain": Chain([FixedStandardize(0.1, 2.0), Clip(-1.0, 1.0)])}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_saved_with_every_normaliser_loads_and_scores_the_same(family, tmp_path):
    for name, normalizer in normalizers().items():
        rm = build(family).set_normalizer(normalizer)
        path = rm.save_pretrained(tmp_path / f"{family}-{name}")
        loaded = nexus.load(path)
        assert type(loaded.normalizer) is type(rm.normalizer), (family, name)
        assert loaded.normalizer.to_config() == rm.normalizer.to_config(), (family, name)
        torch.testing.assert_close(loaded.score(PROMPTS, RESPONSES).rewards, rm.score(PROMPTS, RESPONSES).rewards,
                                   msg=f"{family} with {name}")


def test_a_checkpoint_with_the_normaliser_among_its_constructor_arguments_still_loads(tmp_path):
    """Checkpoints written before saved state had its own section kept "normalizer" at the top level."""
    import json

    rm = build("outcome").set_normalizer(FixedStandardize(0.1, 2.0))
    path = rm.save_pretrained(tmp_path / "ckpt")
    config = json.loads((path / "config.json").read_text())
    config.update(config.pop("saved_state"))
    (path / "config.json").write_text(json.dumps(config))
    loaded = nexus.load(path)
    torch.testing.assert_close(loaded.score(PROMPTS, RESPONSES).rewards, rm.score(PROMPTS, RESPONSES).rewards)


@pytest.mark.parametrize("family", ["scalar", "ensemble", "outcome", "multi_objective", "rules"])
@pytest.mark.parametrize("normalizer", [None, "batch", "fixed"])
def test_evaluation_reports_the_probability_compare_gives(family, normalizer):
    rm = build(family)
    if normalizer is not None:
        rm.set_normalizer(normalizers()[normalizer])
    rm.temperature.fill_(1.7)  # a fitted temperature must apply to the raw log-odds in both
    pairs = [PairwiseExample(p, r, r + " no") for p, r in zip(PROMPTS, RESPONSES)]
    scores = score_pairs(rm, pairs)
    expected = rm.compare([p.prompt for p in pairs], [p.chosen for p in pairs], [p.rejected for p in pairs])
    np.testing.assert_allclose(scores.p_chosen, expected.double().numpy(), rtol=1e-5, atol=1e-6)
    if normalizer is not None:  # the rewards are still what `score` returns, normalised
        torch.testing.assert_close(scores.chosen.rewards, rm.score(PROMPTS, [p.chosen for p in pairs]).rewards
                                   if normalizer == "fixed" else scores.chosen.rewards)


OPTIONS = dict(batch_size=2, max_tokens=256, share_prompts=False, progress=False, normalize=False)


@pytest.mark.parametrize("family", FAMILIES + ["hybrid"])
def test_one_call_with_every_documented_option_works_on_every_family(family):
    rm = (HybridRewardModel(build("rules"), build("scalar")) if family == "hybrid" else build(family))
    plain = rm.score(PROMPTS, RESPONSES, normalize=False)
    every = rm.score(PROMPTS, RESPONSES, **OPTIONS)
    assert every.rewards.shape == (len(PROMPTS),)
    torch.testing.assert_close(every.rewards, plain.rewards, atol=1e-4, rtol=1e-4)


def test_families_share_the_base_score_and_compare():
    """One `score` for every family (per-input columns and per-call options go through it), one
    `compare` for every family but the generative judge, which asks the judge in both orders."""
    import nexus.models as registry
    from nexus.base import RewardModel

    for model_type, cls in registry.MODEL_TYPES.items():
        if not cls.__module__.startswith("nexus."):
            continue  # families that test files define for themselves
        assert cls.score is RewardModel.score, model_type
        assert cls.compare is RewardModel.compare or model_type == "generative", model_type


def test_extra_keywords_are_checked_and_travel_with_their_inputs():
    rules = instantiate(OmegaConf.create({"_target_": "nexus.models.rules.RulesRewardModel",
                                          "functions": ["math_correct"]}))
    references = ["3", "2", "8", "6", "14", "6"]
    out = rules.score(PROMPTS, RESPONSES, references=references, batch_size=1)
    assert out.rewards.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]  # the last ends in words, not a number
    with pytest.raises(TypeError, match="weights .*this family's extra keywords: references"):
        rules.score(PROMPTS, RESPONSES, references=references, weights=[1.0])
    with pytest.raises(ValueError, match="references has 2 entries but there are 6"):
        rules.compare(PROMPTS, RESPONSES, RESPONSES, references=references[:2])
    p = rules.compare(PROMPTS, RESPONSES, ["0"] * len(PROMPTS), references=references)
    assert (p[[0, 1, 2]] > 0.5).all() and (p[[3, 4, 5]] == 0.5).all()
    multi = build("multi_objective")
    helpful = multi.score(PROMPTS, RESPONSES, weights={"helpfulness": 1.0, "harmlessness": 0.0, "honesty": 0.0})
    torch.testing.assert_close(helpful.rewards, helpful.extras["helpfulness"])
    with pytest.raises(TypeError, match="references"):
        multi.score(PROMPTS, RESPONSES, references=references)

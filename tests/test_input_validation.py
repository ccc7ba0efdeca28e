"""Hostile and careless input: every bad size, string or file gets a clear error (or the right result).

Covers `max_length`, batch sizes and token budgets (score, collators, trainer and experiment configs),
the character pre-cut of over-long strings, lone surrogates, deeply nested JSON, a run without
evaluation sets, and temperature calibration on too few pairs.
"""

from __future__ import annotations

import json
import random
import warnings

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from nexus.backbones import load_backbone
from nexus.backbones.backbone import Backbone
from nexus.backbones.tiny import build_tiny
from nexus.batching import token_budget_batches
from nexus.calibration import MIN_CALIBRATION_PAIRS, UninformativePairsError, fit_temperature
from nexus.data.collators import PairwiseCollator, bootstrap_weights
from nexus.data.formats import DataFormatError, PairwiseExample, read_pairwise, write_jsonl
from nexus.models.ensemble import EnsembleRewardModel
from nexus.models.rules import RulesRewardModel
from nexus.models.scalar import ScalarRewardModel
from nexus.training import RewardTrainingArguments
from nexus.validation import check_config_sizes, check_positive_int
from tests.conftest import compose_config, compose_train

# ---------------------------------------------------------------- the shared size check


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "3", None])
def test_check_positive_int_names_the_option_and_range(value):
    with pytest.raises(ValueError, match=rf"^batch_size={value!r}: expected an integer >= 1$".replace("(", r"\(")):
        check_positive_int("batch_size", value)


def test_check_positive_int_accepts_sizes_and_optional_none():
    assert check_positive_int("n", np.int64(3)) == 3
    assert check_positive_int("n", None, allow_none=True) is None
    with pytest.raises(ValueError, match=r"^max_length=9: expected an integer in \[2, 8\] or None$"):
        check_positive_int("max_length", 9, 2, 8, allow_none=True)
    with pytest.raises(ValueError, match=r"^data\.n_train=0: expected an integer >= 1$"):
        check_config_sizes({"n_train": 0, "other": -5}, {"n_train": 1, "absent": 1}, "data")


# ---------------------------------------------------------------- max_length


@pytest.mark.parametrize("value", [-1, 0, 1, 513, 2.5, True])
def test_bad_max_length_is_refused_at_construction(value):
    with pytest.raises(ValueError, match=rf"^max_length={value!r}: expected an integer in \[2, 512\] or None "
                                         r"\(tiny-gpt2 embeds 512 positions"):
        load_backbone("tiny-gpt2", max_length=value)


def test_max_length_default_bounds_and_later_assignment():
    assert load_backbone("tiny-gpt2").max_length == 512
    assert load_backbone("tiny-bert", max_length=2).max_length == 2
    bb = load_backbone("tiny-llama", max_length=512)
    with pytest.raises(ValueError, match=r"max_length=-1: expected an integer in \[2, 512\]"):
        bb.max_length = -1
    assert bb.max_length == 512  # a refused value leaves the old one


def test_bad_max_length_in_the_hydra_backbone_config_fails_before_training(tmp_path):
    cfg = compose_train(tmp_path, ["backbone=tiny-gpt2", "backbone.max_length=-1"])
    with pytest.raises(Exception, match=r"max_length=-1: expected an integer in \[2, 512\] or None"):
        instantiate(cfg.backbone)


# ---------------------------------------------------------------- batch sizes and token budgets


@pytest.mark.parametrize("option, value", [("batch_size", 0), ("batch_size", -1), ("batch_size", 2.0),
                                           ("max_tokens", 0), ("max_tokens", -3)])
@pytest.mark.parametrize("share_prompts", [True, False])
def test_score_refuses_bad_batching_options(scalar_rm, mixed_inputs, option, value, share_prompts):
    prompts, responses = mixed_inputs
    with pytest.raises(ValueError, match=rf"^{option}={value!r}: expected an integer >= 1 or None$"):
        scalar_rm.score(prompts, responses, share_prompts=share_prompts, **{option: value})


def test_compare_and_model_attributes_are_checked_too(scalar_rm, mixed_inputs):
    prompts, responses = mixed_inputs
    scalar_rm.batch_size = 0
    with pytest.raises(ValueError, match=r"^ScalarRewardModel\.batch_size=0: expected an integer >= 1$"):
        scalar_rm.compare(prompts, responses, responses)
    scalar_rm.batch_size, scalar_rm.max_tokens = 2, 0
    with pytest.raises(ValueError, match=r"^ScalarRewardModel\.max_tokens=0: expected an integer >= 1 or None$"):
        scalar_rm.score(prompts, responses)
    with pytest.raises(ValueError, match="max_tokens=0"):
        token_budget_batches([3, 2], 0)


def test_batch_size_one_scores_like_the_default(scalar_rm, mixed_inputs):
    prompts, responses = mixed_inputs
    torch.testing.assert_close(scalar_rm.score(prompts, responses, batch_size=1, share_prompts=False).rewards,
                               scalar_rm.score(prompts, responses).rewards, atol=1e-5, rtol=0)
    torch.testing.assert_close(scalar_rm.score(prompts, responses, max_tokens=1).rewards,
                               scalar_rm.score(prompts, responses).rewards, atol=1e-5, rtol=0)


def test_every_entry_point_of_a_size_refuses_a_bad_one(scalar_rm):
    bb = load_backbone("tiny-gpt2")
    with pytest.raises(ValueError, match=r"^batch_size=0: expected an integer >= 1$"):
        ScalarRewardModel(bb, head_hidden=8, batch_size=0)
    with pytest.raises(ValueError, match=r"^batch_size=-1: expected an integer >= 1 or None$"):
        scalar_rm.score_candidates("p", ["a", "b", "c"], batch_size=-1)
    with pytest.raises(ValueError, match=r"^batch_size=0: expected an integer >= 1 or None$"):
        RulesRewardModel(["repetition"]).score(["p"], ["a b"], batch_size=0)
    with pytest.raises(ValueError, match=r"^n_members=0: expected an integer >= 1$"):
        EnsembleRewardModel(bb, n_members=0, head_hidden=8)
    with pytest.raises(ValueError, match=r"^bootstrap_members=0: expected an integer >= 1 or None$"):
        PairwiseCollator(bb, bootstrap_members=0)
    with pytest.raises(ValueError, match=r"^n_members=-2: expected an integer >= 1$"):
        bootstrap_weights([PairwiseExample("p", "a", "b")], -2)


@pytest.mark.parametrize("field, value, message", [
    ("per_device_train_batch_size", 0, r"per_device_train_batch_size=0: expected an integer >= 1"),
    ("per_device_eval_batch_size", -1, r"per_device_eval_batch_size=-1: expected an integer >= 1"),
    ("max_steps", 0, r"max_steps=0: expected an integer >= 1, or -1 to train for num_train_epochs"),
    ("num_train_epochs", 0, r"num_train_epochs=0: expected a number > 0"),
])
def test_training_arguments_refuse_bad_sizes(tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message):
        RewardTrainingArguments(output_dir=str(tmp_path), use_cpu=True, **{field: value})
    with pytest.raises(ValueError, match=r"gradient_accumulation_steps=0: expected an integer >= 1"):
        RewardTrainingArguments(output_dir=str(tmp_path), use_cpu=True, gradient_accumulation_steps=0)
    cfg = compose_train(tmp_path, [f"trainer.{field}={value}"])  # the same through the Hydra trainer config
    with pytest.raises(Exception, match=message):
        instantiate(cfg.trainer, report_to="none")


def test_data_and_experiment_config_sizes_are_checked(tmp_path):
    from experiments.common import check_experiment_sizes, load_data

    cfg = compose_train(tmp_path, ["data.n_train=0"])
    with pytest.raises(ValueError, match=r"^data\.n_train=0: expected an integer >= 1$"):
        load_data(cfg.data)
    cfg = compose_train(tmp_path, ["data.n_calibration=-1"])
    with pytest.raises(ValueError, match=r"^data\.n_calibration=-1: expected an integer >= 0$"):
        load_data(cfg.data)
    for override, message in [
        ("experiment.ns=[0,4]", r"^experiment\.ns\[0\]=0: expected an integer >= 1$"),
        ("experiment.n_candidates=0", r"^experiment\.n_candidates=0: expected an integer >= 1$"),
        ("experiment.ns=[1,128]", r"^experiment\.ns: max 128 exceeds experiment\.n_candidates=64"),
        ("experiment.n_problems=-5", r"^experiment\.n_problems=-5: expected an integer >= 1$"),
    ]:
        cfg = compose_config(tmp_path, "run", ["experiment=compare_rms", override])
        with pytest.raises(ValueError, match=message):
            check_experiment_sizes(cfg.experiment)
    cfg = compose_config(tmp_path, "run", ["experiment=ensemble_uncertainty", "experiment.n_members=[1,0]"])
    with pytest.raises(ValueError, match=r"^experiment\.n_members\[1\]=0: expected an integer >= 1$"):
        check_experiment_sizes(cfg.experiment)
    for experiment in ("compare_rms", "ensemble_uncertainty", "active_learning", "process_vs_outcome"):
        check_experiment_sizes(compose_config(tmp_path, "run", [f"experiment={experiment}"]).experiment)


# ---------------------------------------------------------------- over-long strings


def _words_text(rng: random.Random, n_words: int) -> str:
    words = ["".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 9))) for _ in range(200)]
    seps = ["", "", ",", ".\n", "  ", " é", "\t", "🙂"]
    return " ".join(rng.choice(words) + rng.choice(seps) for _ in range(n_words))


def _merging_backbone(max_length: int) -> Backbone:
    """The tiny GPT-2 with a small byte-level BPE tokenizer that merges characters (GPT-2's regex)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(1)
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<pad>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator([_words_text(rng, 200) for _ in range(30)], trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>")
    model, _ = build_tiny("tiny-gpt2")
    return Backbone(model, tokenizer, source="tiny-gpt2+bpe", max_length=max_length)


def _truncated(bb: Backbone, prompts, responses) -> list[list[int]]:
    return [seq[-bb.max_length:] for seq in bb.token_ids(prompts, responses)]


@pytest.mark.parametrize("make", [lambda: load_backbone("tiny-gpt2", max_length=64),
                                  lambda: load_backbone("tiny-bert", max_length=64),
                                  lambda: _merging_backbone(64)],
                         ids=["byte-decoder", "byte-encoder", "bpe-decoder"])
def test_character_precut_keeps_exactly_the_tokens_truncation_keeps(make, monkeypatch):
    bb = make()
    rng = random.Random(0)
    long = _words_text(rng, 30_000)
    texts = [long, "x" * 200_000, " " * 50_000 + "end", long + " " * 100_000, "é🙂" * 40_000,
             "<eos>" * 20_000 + long[:3000], _words_text(rng, 20)]
    prompts = [_words_text(rng, 5), long[:50_000], "", "p", "q", "r", "s"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clipped = _truncated(bb, prompts, texts)
        monkeypatch.setattr(bb, "clip_text", lambda text: text)  # tokenise every string whole
        whole = _truncated(bb, prompts, texts)
        assert clipped == whole
        full = len(bb.token_ids(["p"], [long])[0])
        monkeypatch.undo()
        assert len(bb.token_ids(["p"], [long])[0]) < full / 10  # the long text was cut before tokenising


def test_a_megabyte_string_is_not_tokenised_whole(scalar_rm):
    huge = "1 + 2 = 3 " * 100_000  # 1 MB
    bb = scalar_rm.backbone
    ids = bb.token_ids(["p"], [huge])[0]
    assert bb.max_length < len(ids) <= 8 * bb.max_length
    with pytest.warns(UserWarning, match="exceed max_length=512"):
        reward = scalar_rm.score(["p"], [huge]).rewards
    tail = huge[-5000:]  # holds the last 512 tokens, so it scores the same
    with pytest.warns(UserWarning, match="exceed max_length=512"):
        torch.testing.assert_close(reward, scalar_rm.score([""], [tail]).rewards, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- lone surrogates and deep nesting


def test_reader_rejects_a_lone_surrogate_naming_file_line_and_field(tmp_path):
    path = tmp_path / "pairs.jsonl"
    good = json.dumps({"prompt": "p", "chosen": "a \U0001F642", "rejected": "b"})  # a pair of escapes is fine
    path.write_text(good + "\n" + '{"prompt": "p", "chosen": "ok\\ud800", "rejected": "b"}\n')
    with pytest.raises(DataFormatError, match=rf"^{path}:2: field 'chosen': lone surrogate at character 2"):
        read_pairwise(path)
    path.write_text(good + "\n\n" + '{"prompt": "p", "chosen": "a", "rejected": "b", "meta": [1, {"k": "\\udfff"}]}\n')
    with pytest.raises(DataFormatError, match=rf"^{path}:3: field 'meta' index 1 key 'k': lone surrogate"):
        read_pairwise(path)
    path.write_text(good + "\n")
    assert read_pairwise(path)[0].chosen == "a \U0001F642"


def test_score_rejects_a_lone_surrogate_naming_the_index(scalar_rm):
    with pytest.raises(ValueError, match=r"^responses\[1\] has a lone surrogate '\\ud800' at character 3"):
        scalar_rm.score(["a", "b"], ["fine", "bad\ud800"])
    with pytest.raises(ValueError, match=r"^prompts\[0\] has a lone surrogate '\\udc00' at character 0"):
        scalar_rm.compare(["\udc00"], ["x"], ["y"])


@pytest.mark.parametrize("line", ["[" * 100_000, '{"prompt": "p", "chosen": "a", "rejected": "b", "x": '
                                  + "[" * 100_000 + "]" * 100_000 + "}"])
def test_deep_nesting_is_a_data_error_naming_file_and_line(tmp_path, line):
    path = tmp_path / "deep.jsonl"
    path.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n" + line + "\n")
    with pytest.raises(DataFormatError, match=rf"^{path}:2: malformed JSON: nesting too deep"):
        read_pairwise(path)


# ---------------------------------------------------------------- a run without evaluation sets


def test_jsonl_run_without_eval_files_reports_training_metrics(tmp_path):
    from experiments.train import run

    rng = random.Random(0)
    train = tmp_path / "train.jsonl"
    write_jsonl(train, [PairwiseExample(f"q{i}", f"yes {rng.random():.3f}", "no") for i in range(24)])
    # The default trainer evaluates every epoch; with nothing to evaluate on, the run must not.
    cfg = compose_train(tmp_path, ["backbone=tiny-gpt2", "data=jsonl", f"data.train_file={train}",
                                   "trainer.max_steps=2", "trainer.per_device_train_batch_size=8",
                                   "trainer.save_strategy=no", "trainer.disable_tqdm=true"])
    run(cfg, tmp_path)
    report = json.loads((tmp_path / "metrics.json").read_text())
    [row] = report["rows"]
    assert row["eval_set"] == "none" and row["train_examples"] == 24 and np.isfinite(row["train_loss"])
    assert "no evaluation sets" in report["note"]
    assert "| none | scalar |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "metrics.csv").read_text().startswith("eval_set,model,")
    assert (tmp_path / "model" / "config.json").is_file() and not (tmp_path / "reliability.png").exists()


# ---------------------------------------------------------------- calibration


def test_calibrate_needs_enough_distinct_pairs(scalar_rm):
    before = float(scalar_rm.temperature)
    with pytest.raises(ValueError, match=r"^calibrate: 1 distinct \(prompt, chosen, rejected\) pairs given "
                                         rf"\(1 in all\); fitting a temperature needs at least {MIN_CALIBRATION_PAIRS}$"):
        scalar_rm.calibrate(["q"], ["good"], ["bad"])
    with pytest.raises(ValueError, match=r"^calibrate: 1 distinct .* pairs given \(30 in all\)"):
        scalar_rm.calibrate(["q"] * 30, ["good"] * 30, ["bad"] * 30)
    same = [f"answer {i}" for i in range(12)]
    with pytest.raises(UninformativePairsError, match=r"^calibrate: 0 of the 12 distinct pairs get a reward "
                                                      r"difference other than 0 \(the model ties the other 12\)"):
        scalar_rm.calibrate([f"q{i}" for i in range(12)], same, same)
    assert float(scalar_rm.temperature) == before  # a refused fit leaves T alone


def test_calibrate_warns_when_the_temperature_hits_a_search_bound():
    rm = RulesRewardModel([{"name": "length", "low": 1, "high": 3}])  # short chosen, long rejected: all right
    prompts = [f"q{i}" for i in range(12)]
    chosen = [f"ok {i}" for i in range(12)]
    rejected = [" ".join(["word"] * (20 + i)) for i in range(12)]
    with pytest.warns(UserWarning, match=r"sits at the lower search bound \(T >= exp\(-7\)\): every one of the 12 "
                                         "pairs is ranked right"):
        temperature = rm.calibrate(prompts, chosen, rejected)
    assert temperature < 0.01
    with pytest.warns(UserWarning, match=r"sits at the upper search bound \(T <= exp\(7\)\): the preference "
                                         "log-odds carry no signal"):
        fit_temperature(np.array([1.0, -1.0] * 10))
    with pytest.raises(UninformativePairsError, match=r"^fit_temperature: 0 of 20 pairs have a preference log-odds"):
        fit_temperature(np.zeros(20))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an ordinary fit is silent
        fit_temperature(np.array([2.0, 1.0, -0.5, 3.0, 0.2, -1.0, 1.5, 0.7, 2.2, -0.3]))


def test_experiments_keep_t_at_one_for_a_model_that_ties_the_pairs():
    from experiments.common import calibrate

    rm = RulesRewardModel(["repetition"])
    pairs = [PairwiseExample(f"q{i}", f"a{i} b", f"c{i} d") for i in range(12)]  # no repeated word: all tie
    with pytest.warns(UserWarning, match="temperature left at 1: calibrate: 0 of the 12 distinct pairs"):
        assert calibrate(rm, pairs) is None
    with pytest.raises(ValueError, match="3 distinct"):
        calibrate(rm, pairs[:3])

"""Distillation of a rule reward into a neural RM: pairs and targets by hand, the
minimum of 10 texts, Spearman equal to scipy's, the texts' perturbations, and the tiny study."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest
import torch
from scipy import stats

from nexus.backbones import load_backbone
from nexus.distill import (LabelledTexts, distill, evaluate_distillation, label_texts, preference_pairs,
                           regression_targets, rule_range, training_examples)
from nexus.tasks.arithmetic.texts import arithmetic_texts, perturb
from nexus.models.outcome import OutcomeRewardModel
from nexus.models.rules import RulesRewardModel
from nexus.models.scalar import ScalarRewardModel
from nexus.training import RewardTrainingArguments
from tests.conftest import compose_config

RULES = RulesRewardModel(["format", "math_correct", {"name": "length", "low": 5, "high": 15}, "repetition"],
                         weights=[1.0, 2.0, 0.5, 0.5])


def scalar_student() -> ScalarRewardModel:
    torch.manual_seed(0)
    return ScalarRewardModel(load_backbone("tiny-gpt2"), head_hidden=16, dropout=0.0).eval()


def texts(n_problems: int, seed: int) -> LabelledTexts:
    prompts, responses, references = arithmetic_texts(n_problems, 3, seed)
    return label_texts(RULES, prompts, responses, references)


def test_fewer_than_10_training_texts_is_an_error(tmp_path):
    nine = texts(3, seed=0)
    assert len(nine) == 9
    with pytest.raises(ValueError, match="at least 10 training texts, got 9"):
        training_examples(scalar_student(), RULES, nine)
    args = RewardTrainingArguments(output_dir=str(tmp_path), max_steps=1, use_cpu=True, report_to="none")
    with pytest.raises(ValueError, match="at least 10 training texts, got 9"):
        distill(scalar_student(), RULES, nine, texts(2, seed=5), args)


def test_preference_pairs_by_hand():
    labelled = LabelledTexts(["p", "p", "p", "q", "q", "q"], ["a", "b", "c", "d", "e", "f"],
                             np.array([0.0, 1.0, 0.5, 0.2, 0.25, 0.2]))
    pairs = preference_pairs(labelled, margin=0.1)
    # p: (a, b) 1.0 apart, (a, c) 0.5, (b, c) 0.5; q: gaps 0.05 and 0 are not above the margin.
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [("p", "b", "a"), ("p", "c", "a"), ("p", "b", "c")]
    assert pairs[1].extra == {"i": 2, "j": 0, "rule_chosen": 0.5, "rule_rejected": 0.0}
    loose = preference_pairs(labelled, margin=0.0)  # a strict gap; the tie (d, f) is never a pair
    assert [(p.chosen, p.rejected) for p in loose][3:] == [("e", "d"), ("e", "f")]
    subset = preference_pairs(labelled, margin=0.0, max_pairs=3, seed=1)
    assert len(subset) == 3 and all(p in loose for p in subset)
    assert [loose.index(p) for p in subset] == sorted(loose.index(p) for p in subset)
    with pytest.raises(ValueError, match="differ by more than margin=1.0"):
        preference_pairs(labelled, margin=1.0)
    with pytest.raises(ValueError, match="margin = -1"):
        preference_pairs(labelled, margin=-1)


def test_regression_targets_scale_by_the_rules_range():
    rules = RulesRewardModel(["format", "toxicity"], weights=[2.0, 1.0])
    assert rule_range(rules) == (-1.0, 2.0)  # 2 * [0, 1] + 1 * [-1, 0]
    labelled = LabelledTexts(["p", "p", "p"], ["a", "b", "c"], np.array([-1.0, 0.5, 2.0]))
    assert [ex.label for ex in regression_targets(labelled, *rule_range(rules))] == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match=r"rewards\[2\] = 2.0 is outside"):
        regression_targets(labelled, -1.0, 1.0)


def test_students_must_fit_their_targets():
    train = texts(4, seed=0)
    with pytest.raises(ValueError, match="targets='regression' needs a student with data_format 'outcome'"):
        training_examples(scalar_student(), RULES, train, targets="regression")
    with pytest.raises(ValueError, match="targets='mse'"):
        training_examples(scalar_student(), RULES, train, targets="mse")
    outcome = OutcomeRewardModel(load_backbone("tiny-gpt2"), head_hidden=8)
    examples = training_examples(outcome, RULES, train, targets="regression")
    low, high = rule_range(RULES)
    np.testing.assert_allclose([ex.label for ex in examples], (train.rewards - low) / (high - low))


def test_spearman_reported_equals_scipys():
    held_out = texts(6, seed=3)
    student = scalar_student()
    report = evaluate_distillation(student, held_out, margin=0.1)
    student_rewards = student.score(held_out.prompts, held_out.responses).rewards.numpy()
    rule_rewards = RULES.score(held_out.prompts, held_out.responses, references=held_out.references).rewards.numpy()
    assert report["spearman"] == pytest.approx(stats.spearmanr(student_rewards, rule_rewards).statistic, abs=1e-6)
    assert report["kendall"] == pytest.approx(stats.kendalltau(student_rewards, rule_rewards).statistic, abs=1e-6)
    pairs = preference_pairs(held_out, 0.1)
    gaps = np.array([student_rewards[p.extra["i"]] - student_rewards[p.extra["j"]] for p in pairs])
    wins = (gaps > 0) + 0.5 * (gaps == 0)
    assert report["n_pairs"] == len(pairs) and report["pair_accuracy"] == pytest.approx(np.mean(wins))


def test_perturbations_change_what_the_rules_see():
    solution, ref = "3 + 4 = 7\n7 - 2 = 5", ["5"]
    rng = random.Random(0)

    def score(text: str) -> dict[str, float]:
        return {k: v.item() for k, v in RULES.score(["3 + 4 - 2"], [text], references=ref).extras.items()}

    assert perturb(solution, "truncate", rng) == "3 + 4 = 7"
    assert score(perturb(solution, "truncate", rng))["math_correct"] == 0.0
    preamble = score(perturb(solution, "preamble", rng))
    assert preamble["format"] == 0.0 and preamble["math_correct"] == 1.0
    prose = perturb(solution, "prose", rng)
    assert prose.endswith("so the result is 5, I think") and score(prose)["math_correct"] == 0.0
    repeated = perturb(solution, "repeat", rng)
    assert score(repeated)["format"] == 1.0 and score(repeated)["repetition"] < score(solution)["repetition"]
    assert arithmetic_texts(4, 2, seed=7) == arithmetic_texts(4, 2, seed=7)


def test_tiny_distill_study_writes_its_files(tmp_path):
    from experiments.distill import run

    cfg = compose_config(tmp_path, "run", [
        "experiment=distill", "+debug=distill", "experiment.save_models=true"])  # 5 x 3 texts, 4 x 3 held out
    out = run(cfg, tmp_path)
    assert [r["student"] for r in out["rows"]] == ["scalar", "ensemble", "regression"]
    assert out["n_train_texts"] == 15 and out["n_held_out_texts"] == 12
    by = {r["student"]: r for r in out["rows"]}
    assert by["regression"]["n_examples"] == 15 and by["regression"]["model"] == "outcome"
    assert by["ensemble"]["model"] == "ensemble" and by["scalar"]["targets"] == "pairs"
    assert all(-1 <= r["spearman"] <= 1 and -1 <= r["spearman_before"] <= 1 for r in out["rows"])
    with open(tmp_path / "metrics.csv") as f:
        assert len(list(csv.DictReader(f))) == 3
    assert json.loads((tmp_path / "metrics.json").read_text())["n_train_texts"] == 15
    assert "| scalar |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "scatter.png").stat().st_size > 0 and (tmp_path / "models" / "scalar" / "config.json").is_file()

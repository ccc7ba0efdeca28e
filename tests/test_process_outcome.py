"""Process and outcome RMs: one-pass step scores, label layouts, training, save/load."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import nexus
from nexus import metrics
from nexus.backbones import load_backbone
from nexus.data.collators import IGNORE, supervised_steps
from nexus.data.formats import OutcomeExample, ProcessExample
from nexus.models.outcome import OutcomeRewardModel
from nexus.models.process import STEP_TOKEN, ProcessRewardModel, aggregate_steps
from nexus.training import RewardTrainer, RewardTrainingArguments

STEPS = ["1 + 2 = 3", "3 * 4 = 12", "12 - 5 = 7", "7 + 1 = 8"]


def prm(**kwargs) -> ProcessRewardModel:
    torch.manual_seed(0)
    return ProcessRewardModel(load_backbone("tiny-gpt2", lm_logprobs=True), head_hidden=16, dropout=0.0,
                              **kwargs).eval()


def keyword_steps(n: int, seed: int) -> list[ProcessExample]:
    """Solutions a tiny model can grade: a step saying 'oops' is wrong, and so is every later one."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(1, 5)
        first_bad = rng.choice([None, *range(k)])
        steps = [("oops " if i == first_bad else "ok ") + "".join(rng.choice("xyz") for _ in range(3))
                 for i in range(k)]
        labels = [0.0 if first_bad is not None and i >= first_bad else 1.0 for i in range(k)]
        out.append(ProcessExample("solve", tuple(steps), tuple(labels)))
    return out


def train(model, data, tmp_path, steps=80):
    args = RewardTrainingArguments(output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=16,
                                   learning_rate=3e-3, save_strategy="no", seed=0, disable_tqdm=True, use_cpu=True)
    RewardTrainer(model=model, args=args, train_dataset=data).train()
    return model.eval()


def test_one_pass_step_rewards_equal_scoring_each_prefix():
    rm = prm()
    out = rm.score(["(1 + 2) * 4 - 5 + 1"], [STEPS])
    assert out.step_rewards[0].shape == (4,)
    for k in range(1, 5):  # causal attention: step k's score cannot see the steps after it
        prefix = rm.score(["(1 + 2) * 4 - 5 + 1"], [STEPS[:k]]).step_rewards[0]
        torch.testing.assert_close(prefix, out.step_rewards[0][:k], atol=1e-5, rtol=0)
    # a string response is split on newlines; the result is the same
    text = rm.score(["(1 + 2) * 4 - 5 + 1"], ["\n".join(STEPS)]).step_rewards[0]
    torch.testing.assert_close(text, out.step_rewards[0])


def test_aggregations_by_hand_and_rewards_follow_them():
    p = torch.tensor([0.9, 0.5, 0.8])
    assert aggregate_steps(p, "min") == 0.5 and aggregate_steps(p, "last") == pytest.approx(0.8)
    assert aggregate_steps(p, "prod").item() == pytest.approx(0.36) and aggregate_steps(p, "mean").item() == pytest.approx(2.2 / 3)
    rm = prm(aggregation="prod")
    out = rm.score(["q", "q"], [STEPS, STEPS[:2]])
    torch.testing.assert_close(out.rewards, torch.stack([s.prod() for s in out.step_rewards]))
    with pytest.raises(ValueError, match="aggregation='median'"):
        prm(aggregation="median")


def test_supervision_options_and_collated_labels_sit_at_separators():
    assert supervised_steps([1, 0, 0, 1], "first_error") == [True, True, False, False]
    assert supervised_steps([1, 1], "first_error") == [True, True]
    assert supervised_steps([1, 0, 1], "last") == [False, False, True]
    rm = prm(supervise="first_error")
    batch = rm.data_collator()([ProcessExample("q", ("a", "b", "c"), (1.0, 0.0, 0.0)),
                                ProcessExample("q", ("a b c d",), (0.7,))])
    at_sep = batch["input_ids"] == rm.step_id
    assert at_sep.sum().item() == 4
    assert batch["labels"][at_sep].tolist() == [1.0, 0.0, IGNORE, pytest.approx(0.7)]
    assert (batch["labels"][~at_sep] == IGNORE).all()


def test_the_text_ends_at_the_last_step_tag():
    # Math-Shepherd-style PRMs are scored on "prompt, step tag, step tag, ...", read at each tag:
    # the last step's tag closes the text, and no eos follows it.
    rm = prm()
    tok = rm.backbone.tokenizer
    plain = tok("What is 2+3?\n\n2+3=5\n" + STEP_TOKEN + "The answer is 5" + STEP_TOKEN)["input_ids"]
    ids = rm.step_token_ids(["What is 2+3?"], [["2+3=5\n", "The answer is 5"]])[0]
    assert ids == plain and ids[-1] == tok.convert_tokens_to_ids(STEP_TOKEN)


def test_step_token_is_reserved_and_truncation_is_an_error():
    rm = prm()
    with pytest.raises(ValueError, match=r"responses\[1\]\[0\] contains the reserved step token"):
        rm.score(["a", "b"], [["x"], [f"y {STEP_TOKEN}"]])
    rm.backbone.max_length = 12
    with pytest.warns(UserWarning, match="exceed max_length"), pytest.raises(ValueError, match="3 steps .* has only"):
        rm.score(["a prompt"], [["first step", "second step", "third"]])


def test_process_save_and_load_keeps_the_step_token(tmp_path):
    rm = prm(aggregation="mean")
    loaded = nexus.load(rm.save_pretrained(tmp_path / "prm"))
    assert isinstance(loaded, ProcessRewardModel) and loaded.step_id == rm.step_id and loaded.aggregation == "mean"
    want, got = rm.score(["q"], [STEPS]), loaded.score(["q"], [STEPS])
    torch.testing.assert_close(got.step_rewards[0], want.step_rewards[0], atol=1e-6, rtol=0)


def test_prm_training_learns_step_labels(tmp_path):
    rm = prm()
    held = keyword_steps(150, seed=1)
    def step_auroc():
        out = rm.score([ex.prompt for ex in held], [list(ex.steps) for ex in held])
        scores = torch.cat(out.step_rewards).numpy()
        labels = np.concatenate([ex.labels for ex in held])
        return metrics.auroc(scores, labels)
    before = step_auroc()
    train(rm.train(), keyword_steps(600, seed=0), tmp_path)
    after = step_auroc()
    assert after > 0.95 and after > before + 0.2, (before, after)


@pytest.mark.parametrize("token_level", [False, True])
def test_outcome_labels_and_training(tmp_path, token_level):
    torch.manual_seed(0)
    rm = OutcomeRewardModel(load_backbone("tiny-gpt2"), head_hidden=16, dropout=0.0, token_level=token_level)
    batch = rm.data_collator()([OutcomeExample("pp", "abc", 1.0), OutcomeExample("pp", "x", 0.0)])
    given = batch["labels"] != IGNORE
    lengths = batch["attention_mask"].sum(1)
    if token_level:  # every response token plus eos: "abc" + eos = 4, "x" + eos = 2
        assert given.sum(1).tolist() == [4, 2]
    else:  # the last token only
        assert given.sum(1).tolist() == [1, 1] and given[torch.arange(2), lengths - 1].all()
    data = [OutcomeExample(ex.prompt, "\n".join(ex.steps), min(ex.labels)) for ex in keyword_steps(600, seed=0)]
    held = [OutcomeExample(ex.prompt, "\n".join(ex.steps), min(ex.labels)) for ex in keyword_steps(150, seed=1)]
    train(rm.train(), data, tmp_path)
    scores = rm.score([ex.prompt for ex in held], [ex.response for ex in held]).rewards
    assert metrics.auroc(scores, [ex.label for ex in held]) > 0.95
    loaded = nexus.load(rm.save_pretrained(tmp_path / "orm"))
    torch.testing.assert_close(loaded.score(["pp"], ["abc"]).rewards, rm.score(["pp"], ["abc"]).rewards)

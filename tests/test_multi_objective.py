"""Multi-objective RM: head, per-objective Bradley-Terry loss with masking, labels,
weighted combination at score time, save/load, and training through RewardTrainer."""

from __future__ import annotations

import math

import pytest
import torch

import nexus
from nexus.backbones import load_backbone
from nexus.data.collators import IGNORE, MultiObjectiveCollator
from nexus.data.formats import PairwiseExample
from nexus.heads import MultiObjectiveHead
from nexus.losses import multi_objective_bt_loss
from nexus.models.multi_objective import MultiObjectiveRewardModel, objective_accuracy
from nexus.training import RewardTrainer, RewardTrainingArguments
from tests.test_training import keyword_pairs

OBJECTIVES = ["helpfulness", "harmlessness", "honesty"]
PROMPTS, RESPONSES = ["1 + 2", "3 - 1 + 4", "", "9 - 1"], ["1 + 2 = 3", "3 - 1 = 2\n2 + 4 = 6", "hi", ""]


def make(weights=None, objectives=OBJECTIVES) -> MultiObjectiveRewardModel:
    torch.manual_seed(0)
    return MultiObjectiveRewardModel(load_backbone("tiny-gpt2"), objectives, weights, head_hidden=16).eval()


def labelled(prompt: str, chosen: str, rejected: str, **labels) -> PairwiseExample:
    return PairwiseExample(prompt, chosen, rejected, extra={"labels": labels})


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_head_keeps_the_objective_axis():
    features = torch.randn(5, 8)
    assert MultiObjectiveHead(8, 3, hidden=0)(features).shape == (5, 3)
    assert MultiObjectiveHead(8, 1, hidden=4)(features).shape == (5, 1)
    with pytest.raises(ValueError, match="objectives=0"):
        MultiObjectiveHead(8, 0)


def test_per_objective_bt_loss_by_hand_with_missing_labels_masked():
    chosen = torch.tensor([[2.0, 0.0, 1.0], [1.0, 3.0, -1.0]])
    rejected = torch.tensor([[0.0, 1.0, 0.0], [1.5, 0.0, 2.0]])
    labels = torch.tensor([[1.0, 0.0, IGNORE], [0.75, IGNORE, IGNORE]])
    total, per = multi_objective_bt_loss(chosen, rejected, labels)
    # objective 0: pairs 0 (y=1, d=2) and 1 (y=0.75, d=-0.5); objective 1: pair 0 only (y=0, d=-1).
    o0 = (-log_sigmoid(2.0) - (0.75 * log_sigmoid(-0.5) + 0.25 * log_sigmoid(0.5))) / 2
    o1 = -log_sigmoid(1.0)  # y = 0: -log sigmoid(-d), d = -1
    assert per[0].item() == pytest.approx(o0) and per[1].item() == pytest.approx(o1)
    assert math.isnan(per[2].item())  # never labelled in this batch: out of the total
    assert total.item() == pytest.approx((o0 + o1) / 2)
    # A masked entry's reward gets no gradient, whatever its value.
    chosen.requires_grad_(True)
    multi_objective_bt_loss(chosen, rejected, labels)[0].backward()
    assert chosen.grad[0, 2] == 0 and chosen.grad[1, 1] == 0 and chosen.grad[1, 0] != 0
    with pytest.raises(ValueError, match=r"labels\[1, 0\] = 2.0"):
        multi_objective_bt_loss(chosen, rejected, torch.tensor([[1.0, 0.0, 1.0], [2.0, 0.0, 1.0]]))
    with pytest.raises(ValueError, match="no pair in the batch is labelled"):
        multi_objective_bt_loss(chosen, rejected, torch.full((2, 3), IGNORE))


def test_collator_reads_per_objective_labels():
    collator = MultiObjectiveCollator(load_backbone("tiny-gpt2"), OBJECTIVES)
    pairs = [labelled("p", "a", "b", helpfulness=1, harmlessness=0),        # honesty missing
             labelled("p", "a", "b", helpfulness=None, honesty=0.5),        # null: unlabelled
             PairwiseExample("p", "a", "b")]                                # plain: every objective 1
    with pytest.warns(UserWarning, match="1 of 3 pairs"):
        batch = collator(pairs)
    assert batch["input_ids"].shape[0] == 6
    assert batch["preferences"].tolist() == [[1.0, 0.0, IGNORE], [IGNORE, IGNORE, 0.5], [1.0, 1.0, 1.0]]
    for bad, match in [(labelled("p", "a", "b", fun=1), r"example 0: extra\['labels'\]\['fun'\]: unknown objective"),
                       (labelled("p", "a", "b", honesty=True), r"\['honesty'\] = True"),
                       (labelled("p", "a", "b", honesty=None), "labels no objective"),
                       (PairwiseExample("p", "a", "b", extra={"labels": [1, 0]}), "is list, expected a dict"),
                       (PairwiseExample("p", "a", "b", margin=1.0, extra={"labels": {"honesty": 1}}), "margin")]:
        with pytest.raises(ValueError, match=match):
            collator([bad])


def test_score_is_the_weighted_combination_and_weights_change_at_score_time():
    rm = make()
    out = rm.score(PROMPTS, RESPONSES)
    per = torch.stack([out.extras[name] for name in OBJECTIVES], dim=-1)
    torch.testing.assert_close(out.rewards, per.mean(-1))  # default: 1/3 each
    weights = {"helpfulness": 2.0, "harmlessness": 0.0, "honesty": 0.5}
    again = rm.score(PROMPTS, RESPONSES, weights=weights)
    torch.testing.assert_close(again.rewards, 2.0 * per[:, 0] + 0.5 * per[:, 2])
    torch.testing.assert_close(again.extras["honesty"], out.extras["honesty"])  # per-objective unchanged
    torch.testing.assert_close(rm.score(PROMPTS, RESPONSES).rewards, out.rewards)  # one call only
    rm.set_weights([0.0, 1.0, 0.0])
    torch.testing.assert_close(rm.score(PROMPTS, RESPONSES).rewards, per[:, 1])
    other = ["0", "3 - 1 = 2", "", "9 - 1 = 7"]
    p = rm.compare(PROMPTS, RESPONSES, other, weights=weights)
    torch.testing.assert_close(p, torch.sigmoid(again.rewards - rm.score(PROMPTS, other, weights=weights).rewards))
    for bad, match in [({"helpfulness": 1.0}, "no weight for 'harmlessness'"),
                       ({"helpfulness": 1, "harmlessness": 1, "honesty": 1, "x": 1}, "unknown objective 'x'"),
                       ([1.0, -1.0, 0.0], r"weights\[1\] = -1.0"), ([0, 0, 0], "all 0"),
                       ([1.0, 2.0], "2 entries but there are 3 objectives")]:
        with pytest.raises(ValueError, match=match):
            rm.score(PROMPTS, RESPONSES, weights=bad)
    for bad, match in [([], "non-empty"), (["a", "a"], r"objectives\[1\] = 'a' repeats"),
                       (["raw_rewards"], "reserved")]:
        with pytest.raises(ValueError, match=match):
            make(objectives=bad)


def test_save_load_round_trip_keeps_objectives_weights_and_rewards(tmp_path):
    rm = make(weights={"helpfulness": 0.6, "harmlessness": 0.3, "honesty": 0.1})
    rm.save_pretrained(tmp_path / "mo")
    loaded = nexus.load(tmp_path / "mo")
    assert loaded.model_type == "multi_objective" and loaded.objectives == OBJECTIVES
    assert loaded.weights == pytest.approx([0.6, 0.3, 0.1])
    a, b = rm.score(PROMPTS, RESPONSES), loaded.score(PROMPTS, RESPONSES)
    torch.testing.assert_close(a.rewards, b.rewards, atol=1e-5, rtol=0)
    for name in OBJECTIVES:
        torch.testing.assert_close(a.extras[name], b.extras[name], atol=1e-5, rtol=0)


def test_trainer_loss_is_the_per_objective_loss_of_the_batch(tmp_path):
    rm = make()
    pairs = [labelled("1 + 1", "1 + 1 = 2", "1 + 1 = 3", helpfulness=1, honesty=0),
             labelled("2 + 2", "2 + 2 = 5", "2 + 2 = 4", harmlessness=1)]
    batch = rm.data_collator()(pairs)
    args = RewardTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    loss = RewardTrainer(model=rm, args=args).compute_loss(rm, batch)
    with torch.no_grad():
        rewards = rm.objective_rewards(batch["input_ids"], batch["attention_mask"])
    chosen, rejected = rewards[:2], rewards[2:]
    by_hand = [-torch.nn.functional.logsigmoid(chosen[0, 0] - rejected[0, 0]),
               -torch.nn.functional.logsigmoid(chosen[1, 1] - rejected[1, 1]),
               -torch.nn.functional.logsigmoid(rejected[0, 2] - chosen[0, 2])]
    assert loss.item() == pytest.approx(sum(by_hand).item() / 3, rel=1e-5)


def test_training_learns_opposite_objectives(tmp_path):
    # "a" prefers the 'yes' answer, "b" the 'no' one: one backbone, two heads pulling apart.
    rm = make(objectives=["a", "b"])
    train = [labelled(p.prompt, p.chosen, p.rejected, a=1, b=0) for p in keyword_pairs(160, seed=0)]
    args = RewardTrainingArguments(output_dir=str(tmp_path), max_steps=16, per_device_train_batch_size=16,
                                   learning_rate=3e-3, save_strategy="no", seed=0, disable_tqdm=True,
                                   use_cpu=True, report_to="none")
    RewardTrainer(model=rm, args=args, train_dataset=train).train()
    held_out = [labelled(p.prompt, p.chosen, p.rejected, a=1, b=0) for p in keyword_pairs(60, seed=1)]
    report = objective_accuracy(rm.eval(), held_out)
    assert report["a"]["n"] == report["b"]["n"] == 60
    assert report["a"]["accuracy"] >= 0.9 and report["b"]["accuracy"] >= 0.9, report

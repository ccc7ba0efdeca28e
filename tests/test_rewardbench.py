"""RewardBench's section scores and weighting, checked by hand, and the study on fixture files."""

from __future__ import annotations

import json

import pytest
import torch

from nexus.rewardbench import best_of_k_wins, check_rows, section_scores, section_weights


def test_section_scores_weight_subsets_by_count_and_math_as_all_code():
    accuracy = {"alpacaeval-easy": 1.0, "mt-bench-easy": 0.5, "mt-bench-hard": 0.25, "donotanswer": 0.8,
                "math-prm": 0.9, "hep-python": 0.5, "hep-go": 0.7, "prior-set": 0.1}
    counts = {"alpacaeval-easy": 2, "mt-bench-easy": 6, "mt-bench-hard": 4, "donotanswer": 5, "math-prm": 30,
              "hep-python": 3, "hep-go": 1, "prior-set": 9}
    scores = section_scores(accuracy, counts)
    chat = (1.0 * 2 + 0.5 * 6) / 8                       # 0.625
    reasoning = (0.9 * 4 + 0.5 * 3 + 0.7 * 1) / (4 + 4)  # math-prm weighs 3 + 1, the code subsets' total: 0.725
    assert scores["Chat"] == pytest.approx(chat) and scores["Chat Hard"] == pytest.approx(0.25)
    assert scores["Safety"] == pytest.approx(0.8) and scores["Reasoning"] == pytest.approx(reasoning)
    assert scores["Score"] == pytest.approx((chat + 0.25 + 0.8 + reasoning) / 4)
    assert section_weights(counts)["Reasoning"]["math-prm"] == 4.0 and "prior-set" not in str(section_weights(counts))


def test_best_of_k_wins_need_the_chosen_above_every_rejected():
    rewards = torch.tensor([3.0, 1.0, 2.0, 2.9, 1.0, 1.0, 5.0, 0.0]).numpy()
    assert best_of_k_wins(rewards, [4, 2, 2]).tolist() == [1.0, 0.0, 1.0]  # a tie (1.0, 1.0) is lost


def test_rows_are_checked_with_their_index():
    with pytest.raises(ValueError, match=r"bench row 1: field 'subset' is missing"):
        check_rows([{"prompt": "p", "chosen": "a", "rejected": "b", "subset": "x"},
                    {"prompt": "p", "chosen": "a", "rejected": "b"}], "bench")
    with pytest.raises(ValueError, match=r"row 0: best-of-k rows need one chosen"):
        check_rows([{"prompt": "p", "chosen": ["a", "b"], "rejected": ["c"], "subset": "x"}], "bench")


def test_the_study_scores_a_checkpoint_per_subset_as_its_rewards_say(tmp_path):
    from experiments.rewardbench import run
    from nexus.backbones import load_backbone
    from nexus.models.scalar import ScalarRewardModel
    from tests.conftest import compose_config

    torch.manual_seed(0)
    rm = ScalarRewardModel(load_backbone("tiny-gpt2"), head_hidden=8, dropout=0.0).eval()
    rm.save_pretrained(tmp_path / "rm")
    rows = [{"prompt": f"{i} + 1", "chosen": f"{i} + 1 = {i + 1}", "rejected": f"{i} + 1 = {i + 2}" + "!" * (i % 3),
             "subset": subset} for subset in ("alpacaeval-easy", "math-prm", "hep-go") for i in range(12)]
    data = tmp_path / "bench.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = compose_config(tmp_path / "run", "run", ["experiment=rewardbench", f"experiment.data={data}",
                                                   "experiment.split=train", f"experiment.checkpoint={tmp_path / 'rm'}"])
    out = run(cfg, tmp_path / "run")
    rewards = rm.score([r["prompt"] for r in rows] * 2, [r["chosen"] for r in rows] + [r["rejected"] for r in rows])
    wins = (rewards.rewards[:36] > rewards.rewards[36:]).float()
    by_hand = {s: float(wins[k * 12:(k + 1) * 12].mean()) for k, s in enumerate(("alpacaeval-easy", "math-prm", "hep-go"))}
    assert {r["subset"]: r["accuracy"] for r in out["rows"]} == pytest.approx(by_hand)
    assert out["sections"]["Reasoning"] == pytest.approx((by_hand["math-prm"] + by_hand["hep-go"]) / 2)
    assert out["sections"]["Score"] == pytest.approx((by_hand["alpacaeval-easy"] + out["sections"]["Reasoning"]) / 2)
    assert 0 <= out["ece_temperature_scaled"] <= 1
    best_of = [{"prompt": r["prompt"], "chosen": [r["chosen"]], "rejected": [r["rejected"], r["rejected"] + "?"],
                "subset": r["subset"]} for r in rows[:12]]
    data.write_text("".join(json.dumps(r) + "\n" for r in best_of))
    out = run(cfg, tmp_path / "run2")
    assert out["layout"] == "RewardBench 2 best-of-k" and 0 <= out["sections"]["Score"] <= 1

"""Training: the RewardTrainer learns, resumes, and the Hydra entry point saves a loadable model."""

from __future__ import annotations

import random

import pytest
import torch

import nexus
from nexus.backbones import load_backbone
from nexus.data.collators import PairwiseCollator
from nexus.data.formats import PairwiseExample
from nexus.evaluation import evaluate_pairwise
from nexus.models.scalar import ScalarRewardModel
from nexus.training import RewardTrainer, RewardTrainingArguments
from tests.conftest import compose_train


def keyword_pairs(n: int, seed: int) -> list[PairwiseExample]:
    """Preferences a tiny model can learn in seconds: chosen says 'yes', rejected 'no'."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        prompt = " ".join(rng.choice("abcdefg") for _ in range(rng.randint(1, 6)))
        filler = "".join(rng.choice("xyz ") for _ in range(rng.randint(0, 8)))
        pairs.append(PairwiseExample(prompt, f"{filler} yes", f"{filler} no"))
    return pairs


def make_trainer(tmp_path, max_steps: int, lm_logprobs: bool = False, **kwargs) -> RewardTrainer:
    torch.manual_seed(0)
    rm = ScalarRewardModel(load_backbone("tiny-gpt2", lm_logprobs=lm_logprobs), head_hidden=16, dropout=0.0)
    args = RewardTrainingArguments(
        output_dir=str(tmp_path), max_steps=max_steps, per_device_train_batch_size=16,
        learning_rate=3e-3, logging_steps=1, seed=0, disable_tqdm=True, use_cpu=True,
        **{"save_strategy": "no", **kwargs},
    )
    return RewardTrainer(model=rm, args=args, train_dataset=keyword_pairs(400, seed=0))


def test_collator_packs_chosen_then_rejected():
    bb = load_backbone("tiny-gpt2")
    pairs = [PairwiseExample("p1", "good", "bad"), PairwiseExample("p2", "fine", "worse", margin=None)]
    batch = PairwiseCollator(bb)(pairs)
    assert batch["input_ids"].shape[0] == 4 and "margin" not in batch
    decoded = [bb.tokenizer.decode(row[mask.bool()][:-1]) for row, mask in zip(batch["input_ids"], batch["attention_mask"])]
    assert decoded == ["p1\n\ngood", "p2\n\nfine", "p1\n\nbad", "p2\n\nworse"]


def test_training_moves_held_out_accuracy(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=60)
    held_out = keyword_pairs(100, seed=1)
    before = evaluate_pairwise(trainer.model, held_out)["accuracy"]
    trainer.train()
    after = evaluate_pairwise(trainer.model, held_out)
    assert before < 0.8 and after["accuracy"] >= 0.95, (before, after)
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10


def test_margin_loss_needs_margins(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=1, loss="bt_margin")
    with pytest.raises(ValueError, match="margin"):
        trainer.train()


def test_resume_from_checkpoint_matches_uninterrupted_run(tmp_path):
    # lm_logprobs: the GPT-2 LM head is tied to the embeddings, which checkpoints must survive.
    full = make_trainer(tmp_path / "full", max_steps=6, lm_logprobs=True)
    full.train()
    part = make_trainer(tmp_path / "part", max_steps=6, lm_logprobs=True, save_strategy="steps", save_steps=3)
    part.train()
    resumed = make_trainer(tmp_path / "part", max_steps=6, lm_logprobs=True)
    resumed.train(resume_from_checkpoint=str(tmp_path / "part" / "checkpoint-3"))
    checkpoint = tmp_path / "part" / "checkpoint-3"
    assert (checkpoint / "model.safetensors").is_file() and not list(checkpoint.glob("*.bin"))
    for (name, a), (_, b) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)


def test_hydra_train_saves_a_model_that_loads_with_the_same_rewards(tmp_path, mixed_inputs):
    from experiments.train import run

    cfg = compose_train(tmp_path, ["backbone=tiny-gpt2", "trainer=debug", "data.n_train=64", "data.n_eval=40"])
    model = run(cfg, tmp_path)
    for name in ("config.yaml", "metrics.json", "metrics.csv", "results.md", "reliability.png"):
        assert (tmp_path / name).is_file(), name
    loaded = nexus.load(tmp_path / "model")
    prompts, responses = mixed_inputs
    torch.testing.assert_close(loaded.score(prompts, responses).rewards, model.score(prompts, responses).rewards,
                               atol=1e-5, rtol=0)
    assert "| id |" in (tmp_path / "results.md").read_text()

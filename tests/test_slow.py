"""Slow end-to-end tests (marked `slow`; CI runs them): torchrun DDP, pretrained backbones, the task LM."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nexus
from nexus.backbones import load_backbone
from nexus.tasks.arithmetic import SPLITS, generate
from nexus.models.scalar import ScalarRewardModel
from nexus.training import RewardTrainer, RewardTrainingArguments

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_torchrun_two_cpu_processes_gloo(tmp_path):
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
        "-m", "experiments.train", "backbone=tiny-gpt2", "trainer=debug", "trainer.ddp_backend=gloo",
        "data.n_train=64", "data.n_eval=32", f"hydra.run.dir={tmp_path}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world_size=2" in proc.stdout
    rm = nexus.load(tmp_path / "model")
    assert torch.isfinite(rm.score(["1 + 1"], ["1 + 1 = 2"]).rewards).all()


def _train_steps(rm: ScalarRewardModel, tmp_path, steps: int, lr: float) -> list[float]:
    pairs = generate(steps * 4, seed=0, cfg=SPLITS["id"])["pairwise"]
    args = RewardTrainingArguments(
        output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=4, learning_rate=lr,
        logging_steps=1, save_strategy="no", seed=0, disable_tqdm=True, use_cpu=True,
    )
    trainer = RewardTrainer(model=rm, args=args, train_dataset=pairs)
    trainer.train()
    return [log["loss"] for log in trainer.state.log_history if "loss" in log]


def test_smollm2_lora_scalar_rm_loss_decreases(tmp_path):
    torch.manual_seed(0)
    backbone = load_backbone("smollm2-135m", lora={"r": 8, "alpha": 16})
    assert backbone.hidden_size == 576 and backbone.pooling == "last"
    rm = ScalarRewardModel(backbone, head_hidden=64, dropout=0.0)
    # Overfit one small batch repeatedly: the loss must fall well below log 2.
    pairs = generate(4, seed=0, cfg=SPLITS["id"])["pairwise"]
    args = RewardTrainingArguments(
        output_dir=str(tmp_path), max_steps=8, per_device_train_batch_size=4, learning_rate=2e-3,
        logging_steps=1, save_strategy="no", seed=0, disable_tqdm=True, use_cpu=True,
    )
    trainer = RewardTrainer(model=rm, args=args, train_dataset=pairs)
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert losses[-1] < 0.5 * losses[0], losses
    rm.save_pretrained(tmp_path / "ckpt")
    again = nexus.load(tmp_path / "ckpt")
    prompts, responses = ["2 + 2", "3 - 1 + 4"], ["2 + 2 = 4", "3 - 1 = 2\n2 + 4 = 6"]
    torch.testing.assert_close(again.score(prompts, responses).rewards, rm.score(prompts, responses).rewards,
                               atol=1e-4, rtol=0)


@pytest.mark.parametrize("name, hidden", [("minilm", 384), ("gemma3-270m", 640)])
def test_pretrained_backbones_score_offline(name, hidden):
    backbone = load_backbone(name)
    assert backbone.hidden_size == hidden
    rm = ScalarRewardModel(backbone, head_hidden=0)
    prompts = ["What is 2 + 2?", "Name a colour."]
    out = rm.score(prompts, ["4", "blue, obviously, and a very long answer " * 4])
    assert out.rewards.shape == (2,) and torch.isfinite(out.rewards).all()
    torch.testing.assert_close(out.rewards[:1], rm.score(prompts[:1], ["4"]).rewards, atol=1e-4, rtol=0)


def test_arith_lm_command_trains_caches_and_loads(tmp_path):
    env = {**os.environ, "NEXUS_CACHE": str(tmp_path), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "nexus.tasks.arithmetic.task_lm", "--max-steps", "20", "--n-examples", "640"]
    first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    path = Path(first.stdout.strip().splitlines()[-1])
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    second = subprocess.run([*cmd, "--eval-pairs", "20"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert second.stdout.strip().splitlines()[-1] == str(path) and "training" not in second.stdout
    accuracy = float(second.stdout.split("log-likelihood accuracy on 20 id pairs: ")[1].split()[0])
    assert 0.0 <= accuracy <= 1.0
    backbone = load_backbone(str(path))
    assert backbone.hidden_size == 128 and backbone.pooling == "last"


def test_wandb_logger_runs_offline(tmp_path, monkeypatch):
    from experiments.train import run
    from tests.conftest import compose_train

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    cfg = compose_train(tmp_path, ["backbone=tiny-gpt2", "trainer=debug", "logger=wandb",
                                   "data.n_train=32", "data.n_eval=16"])
    run(cfg, tmp_path)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert runs and any(runs[0].rglob("*.wandb"))


def test_a_wandb_study_job_writes_one_run_into_its_own_folder(tmp_path):
    """The Trainer's wandb callback and the study's log share one run, kept in the Hydra job's folder,
    not in the working directory that every job of a sweep shares."""
    cwd, job = tmp_path / "cwd", tmp_path / "job"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update({"WANDB_MODE": "offline", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
    cmd = [sys.executable, "-m", "experiments.run", "experiment=active_learning", "+debug=active_learning",
           "logger=wandb", f"hydra.run.dir={job}"]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(cwd.iterdir()) == []
    runs = list(tmp_path.rglob("offline-run-*"))
    assert [r.parent for r in runs] == [job / "wandb"], runs
    log = next(runs[0].glob("*.wandb")).read_bytes()
    assert b"train/global_step" in log and b"active_learning" in log  # the Trainer's curves and the study's config

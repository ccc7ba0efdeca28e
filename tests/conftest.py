"""Shared fixtures: tiny random backbones, small arithmetic data, a composed Hydra config."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

PROMPTS = ["1 + 2", "3 + 4 - 5 + 6 - 7 + 8", "", "9 - 1", "a prompt with unicode: é ✓"]
RESPONSES = ["1 + 2 = 3", "", "hé", "9 - 1 = 8\nextra line\n" * 5, "ok"]


@pytest.fixture(scope="session")
def mixed_inputs():
    return list(PROMPTS), list(RESPONSES)


@pytest.fixture
def scalar_rm():
    from nexus.backbones import load_backbone
    from nexus.models.scalar import ScalarRewardModel

    torch.manual_seed(0)
    return ScalarRewardModel(load_backbone("tiny-gpt2"), head_hidden=16, dropout=0.0).eval()


def compose_train(tmp_path, overrides: list[str]):
    """Compose experiments/conf/train.yaml as `python -m experiments.train` would."""
    return compose_config(tmp_path, "train", overrides)


def compose_config(tmp_path, name: str, overrides: list[str]):
    """Compose experiments/conf/<name>.yaml as its entry point would, with the run dir at tmp_path."""
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    conf = Path(__file__).resolve().parents[1] / "experiments" / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(name, overrides=[f"hydra.run.dir={tmp_path}", *overrides], return_hydra_config=True)
    OmegaConf.set_readonly(cfg.hydra, False)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
    HydraConfig.instance().set_config(cfg)
    return cfg

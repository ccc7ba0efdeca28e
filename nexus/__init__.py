"""nexus: a research zoo of reward models for RLHF behind one `score()` interface."""

from __future__ import annotations

import os
from pathlib import Path

# No hub on most machines this runs on: never try to reach one.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from nexus.base import RewardModel, RewardOutput, read_config  # noqa: E402

__version__ = "0.1.0"


def load(path: str | os.PathLike, device: str = "cpu") -> RewardModel:
    """Load any nexus checkpoint; dispatches on config.json's "model_type"."""
    from nexus.models import get_model_class

    config = read_config(Path(path))
    return get_model_class(config["model_type"]).from_pretrained(path, device=device)


__all__ = ["RewardModel", "RewardOutput", "load", "__version__"]

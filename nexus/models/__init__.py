"""The registry of reward-model types: `model_type` in config.json -> class.

Adding a family is one module here plus one entry below (and one YAML in
`experiments/conf/model/`).
"""

from __future__ import annotations

import importlib

MODEL_TYPES = {
    "scalar": "nexus.models.scalar:ScalarRewardModel",
    "ensemble": "nexus.models.ensemble:EnsembleRewardModel",
    "outcome": "nexus.models.outcome:OutcomeRewardModel",
    "process": "nexus.models.process:ProcessRewardModel",
    "rules": "nexus.models.rules:RulesRewardModel",
    "hybrid": "nexus.models.hybrid:HybridRewardModel",
    "generative": "nexus.models.generative:GenerativeRewardModel",
    "multi_objective": "nexus.models.multi_objective:MultiObjectiveRewardModel",
}


def get_model_class(model_type: str):
    """The `RewardModel` subclass registered under `model_type`."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown model_type {model_type!r}; known: {', '.join(sorted(MODEL_TYPES))}")
    module, name = MODEL_TYPES[model_type].split(":")
    return getattr(importlib.import_module(module), name)

"""The reward-model families, one module each, and the lookup of a `model_type` (config.json) to
its class (kept in `nexus.registry`, which each `RewardModel` subclass with a `model_type` joins).

The families of this package are imported on the first lookup; one defined elsewhere is known once
its module is imported. Adding a family to the package is its module here plus its YAML in
`experiments/conf/model/`.
"""

from __future__ import annotations

from nexus.registry import MODEL_REGISTRY, get_model_class, known_types

__all__ = ["MODEL_REGISTRY", "get_model_class"]


def __getattr__(name: str):
    if name == "MODEL_TYPES":  # every registered type, the package's own imported first
        return known_types()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

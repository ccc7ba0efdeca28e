"""The registry of reward-model types: `model_type` in config.json -> class.

A family registers itself by defining a `RewardModel` subclass with a `model_type`
(`RewardModel.__init_subclass__`). The families of this package are imported on the first lookup;
one defined elsewhere is known once its module is imported. Adding a family to the package is its
module here plus its YAML in `experiments/conf/model/`.
"""

from __future__ import annotations

import importlib
import pkgutil

from nexus.base import MODEL_REGISTRY


def _import_package_families() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def get_model_class(model_type: str):
    """The `RewardModel` subclass registered under `model_type`."""
    if model_type not in MODEL_REGISTRY:
        _import_package_families()
    if model_type not in MODEL_REGISTRY:
        raise ValueError(f"unknown model_type {model_type!r}; known: {', '.join(sorted(MODEL_REGISTRY))} "
                         "(a family defined outside nexus.models is known once its module is imported)")
    return MODEL_REGISTRY[model_type]


def __getattr__(name: str):
    if name == "MODEL_TYPES":  # every registered type, the package's own imported first
        _import_package_families()
        return dict(MODEL_REGISTRY)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The registry of reward-model types: `model_type` in config.json -> class.

A leaf module: it imports no other module of nexus. A family registers itself by defining a
`RewardModel` subclass with a `model_type` (`RewardModel.__init_subclass__` calls `register`).
The families of `nexus.models` are discovered by name (`importlib`) on the first lookup of a type
not yet registered, the way plugin registries find their entries, so that the checkpoint code
can ask for a family without importing the families it loads; one defined elsewhere is known
once its module is imported.
"""

from __future__ import annotations

import importlib
import pkgutil

MODEL_REGISTRY: dict[str, type] = {}
# The package whose modules are the built-in families.
FAMILIES_PACKAGE = "nexus.models"
_families_imported = False


def register(cls: type, model_type: str) -> None:
    """Record `cls` under `model_type`; ValueError if another class holds it (the same class defined
    again, as a module reload does, replaces the first)."""
    existing = MODEL_REGISTRY.get(model_type)
    if existing is not None and (existing.__module__, existing.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"model_type {model_type!r} is already registered by "
                         f"{existing.__module__}.{existing.__qualname__}; {cls.__qualname__} needs another")
    MODEL_REGISTRY[model_type] = cls


def import_package_families() -> None:
    """Import every module of `FAMILIES_PACKAGE` (once), so that each built-in family is registered."""
    global _families_imported
    if _families_imported:
        return
    package = importlib.import_module(FAMILIES_PACKAGE)
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{FAMILIES_PACKAGE}.{info.name}")
    _families_imported = True


def known_types() -> dict[str, type]:
    """Every registered type, the built-in families imported first."""
    import_package_families()
    return dict(MODEL_REGISTRY)


def get_model_class(model_type: str) -> type:
    """The `RewardModel` subclass registered under `model_type` (ValueError naming the known ones)."""
    if model_type not in MODEL_REGISTRY:
        import_package_families()
    if model_type not in MODEL_REGISTRY:
        raise ValueError(f"unknown model_type {model_type!r}; known: {', '.join(sorted(MODEL_REGISTRY))} "
                         "(a family defined outside nexus.models is known once its module is imported)")
    return MODEL_REGISTRY[model_type]

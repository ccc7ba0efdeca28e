"""Backbone names that other parts of nexus provide, such as the arithmetic task's LMs.

A provider module registers a resolver (`register_names`): a function from a name to the local
Hugging Face directory behind it, or None when the name is not its own. The backbone loader asks
the providers listed in `PROVIDERS` by module name (`importlib`), so the core names no task in an
import and a task brings its own models.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

# Modules that register backbone names when imported.
PROVIDERS = ["nexus.tasks.arithmetic.task_lm"]
_RESOLVERS: dict[str, Callable[[str], Path | None]] = {}


def register_names(label: str, resolver: Callable[[str], Path | None]) -> None:
    """Add the resolver `label` (the names it serves); registering a label again replaces it, so a
    reloaded provider module does not ask twice."""
    _RESOLVERS[label] = resolver


def resolve_name(name: str) -> Path | None:
    """The directory a provider serves for `name`, or None when no provider knows the name."""
    for module in PROVIDERS:
        importlib.import_module(module)
    for resolver in list(_RESOLVERS.values()):
        directory = resolver(name)
        if directory is not None:
            return directory
    return None

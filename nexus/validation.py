"""Checks for size options (batch sizes, token budgets, counts, lengths) shared by the library and
the experiments, so every bad size fails early with one kind of message: the option's name, the
value given and the range allowed, e.g. ``batch_size=0: expected an integer >= 1``; and the JSON
object files (config.json) read where a checkpoint enters.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _describe_range(minimum: int, maximum: int | None, allow_none: bool) -> str:
    text = f"an integer >= {minimum}" if maximum is None else f"an integer in [{minimum}, {maximum}]"
    return f"{text} or None" if allow_none else text


def check_positive_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None, *,
                       allow_none: bool = False) -> int | None:
    """`value` as an int if it is an integer in [minimum, maximum] (None passes with `allow_none`).

    Bools and floats are refused (``True`` or ``2.5`` as a batch size is a mistake, not a size).

    Raises:
        ValueError: ``"{name}={value!r}: expected an integer >= {minimum}"`` (or ``in [min, max]``).
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not (
            minimum <= value and (maximum is None or value <= maximum)):
        raise ValueError(f"{name}={value!r}: expected {_describe_range(minimum, maximum, allow_none)}")
    return int(value)


def check_config_sizes(config: Mapping, sizes: Mapping[str, int], prefix: str) -> None:
    """Check the integer sizes of a config section: `sizes` maps a key to its minimum.

    Keys absent from `config` are skipped (their defaults apply); errors name the full
    option path, e.g. ``data.n_train=0: expected an integer >= 1``.
    """
    for key, minimum in sizes.items():
        if key in config:
            check_positive_int(f"{prefix}.{key}", config[key], minimum)


def read_json_object(file: Path) -> dict:
    """A JSON file that must hold an object; errors name the file (and the line of a syntax error)."""
    try:
        value = json.loads(Path(file).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{file}:{err.lineno}: malformed JSON: {err.msg}") from err
    if not isinstance(value, dict):
        raise ValueError(f"{file}: expected a JSON object, got {type(value).__name__}")
    return value

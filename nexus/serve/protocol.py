"""What the endpoints read and write: request bodies checked field by field, and outputs as JSON.

Every refusal is a `RequestError` with an HTTP status and a message that names the field, and
the index where one item is at fault (`query[3]`), so a client can fix exactly what is wrong.
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

from torch import Tensor

from nexus.outputs import RewardOutput


class RequestError(Exception):
    """A request the server refuses: `status` (413, 422, 401, 503, ...), a message, extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def parse_body(body: bytes) -> dict[str, Any]:
    """The request's JSON object; 422 naming the line and column of malformed JSON."""
    try:
        value = json.loads(body)
    except UnicodeDecodeError as err:
        raise RequestError(422, f"body is not UTF-8 text: {err.reason} at byte {err.start}") from None
    except json.JSONDecodeError as err:
        raise RequestError(422, f"body is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    if not isinstance(value, dict):
        raise RequestError(422, f"body must be a JSON object, got {json_type(value)}")
    return value


def json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def get_list(body: dict, name: str, *, required: bool = True) -> list | None:
    """`body[name]` as a list; 422 naming the field if it is missing or not an array."""
    if name not in body or body[name] is None:
        if required:
            raise RequestError(422, f"field '{name}' is required (an array)")
        return None
    value = body[name]
    if not isinstance(value, list):
        raise RequestError(422, f"field '{name}' must be an array, got {json_type(value)}")
    return value


def check_strings(name: str, values: list) -> None:
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise RequestError(422, f"{name}[{i}] must be a string, got {json_type(value)}")


def check_same_length(name: str, values: list, other: str, n: int) -> None:
    if len(values) != n:
        raise RequestError(422, f"field '{name}' has {len(values)} items but '{other}' has {n}")


def check_count(name: str, n: int, limit: int) -> None:
    if n == 0:
        raise RequestError(422, f"field '{name}' is empty: send at least one item")
    if n > limit:
        raise RequestError(422, f"field '{name}' has {n} items; the limit is {limit} per request "
                                "(max_items_per_request): split it into several requests")


def check_sizes(names: Sequence[str], sizes: Sequence[int], limit: int | None, unit: str) -> None:
    """422 naming the first item over `limit` (never cut: a cut input would get another reward)."""
    if limit is None:
        return
    for name, size in zip(names, sizes):
        if size > limit:
            raise RequestError(422, f"{name} is {size} {unit} long; the limit is {limit} {unit} per item "
                                    "(max_tokens_per_item, at most the model's max_input_length)")


def floats(values: Tensor | Sequence) -> list:
    """A tensor (any shape) as nested lists of floats; NaN and infinities become null (JSON has none)."""
    data = values.detach().float().cpu().tolist() if isinstance(values, Tensor) else list(values)
    return _finite(data)


def _finite(data: Any) -> Any:
    if isinstance(data, list):
        return [_finite(v) for v in data]
    return data if data is None or math.isfinite(data) else None


def score_payload(out: RewardOutput) -> dict[str, Any]:
    """`RewardOutput` as JSON: rewards, uncertainty, step_rewards, explanations, extras (nulls where
    the family has none)."""
    return {
        "rewards": floats(out.rewards),
        "uncertainty": None if out.uncertainty is None else floats(out.uncertainty),
        "step_rewards": None if out.step_rewards is None else [floats(s) for s in out.step_rewards],
        "explanations": out.explanations,
        "extras": {name: floats(value) for name, value in (out.extras or {}).items()},
    }


def reward_payload(out: RewardOutput) -> dict[str, Any]:
    """OpenRLHF's response: `rewards` (what the policy is trained on: normalised where the model has
    a normaliser), `scores` (the raw rewards) and `extra_logs`, whose values are all one number per
    query, as OpenRLHF logs them: `uncertainty`; each per-input extra, a 'b k' one as `name/j` per
    column (an ensemble's `member_means/0`, ...); and a process RM's `step_rewards/min`,
    `step_rewards/mean` and `steps` (0 for a response without steps)."""
    extras = dict(out.extras or {})
    raw = extras.pop("raw_rewards", out.rewards)
    logs: dict[str, list] = {}
    if out.uncertainty is not None:
        logs["uncertainty"] = floats(out.uncertainty)
    for name, value in extras.items():
        if value.dim() == 1:
            logs[name] = floats(value)
        elif value.dim() == 2:
            for j in range(value.shape[1]):
                logs[f"{name}/{j}"] = floats(value[:, j])
    if out.step_rewards is not None:
        logs["step_rewards/min"] = [float(s.min()) if s.numel() else 0.0 for s in out.step_rewards]
        logs["step_rewards/mean"] = [float(s.float().mean()) if s.numel() else 0.0 for s in out.step_rewards]
        logs["steps"] = [int(s.numel()) for s in out.step_rewards]
    return {"rewards": floats(out.rewards), "scores": floats(raw), "extra_logs": logs}

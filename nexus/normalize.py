"""Reward normalisers, usable after any reward model.

A normaliser maps the rewards of one `score` call to new rewards. Attach one with
`rm.set_normalizer(...)`: `score` then applies it (raw rewards stay in `extras["raw_rewards"]`),
`compare` and `calibrate` keep using raw rewards, and `save_pretrained` writes the normaliser
(statistics included) into config.json so `nexus.load` applies it at inference.

- `BatchStandardize`: (r - mean) / (std + eps) over the rewards of one `score` call.
- `Clip`: clamp to [low, high].
- `RunningStandardize`: standardise with running statistics (`RunningMeanStd`) updated by
  every call, as PPO implementations normalise rewards.
- `FixedStandardize`: standardise with a mean and std measured once on a reference set.
- `Chain`: several in order, e.g. standardise then clip.

Standard deviations are population ones (divide by n). Legend: b batch.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Mapping, Sequence

import torch
from torch import Tensor

from nexus.outputs import RewardOutput

if TYPE_CHECKING:
    from nexus.base import RewardModel


def _as_float64(values: Any, name: str) -> Tensor:
    """A flat float64 tensor of finite values; errors name the first bad index."""
    tensor = torch.as_tensor(values, dtype=torch.float64).detach().cpu().flatten()
    bad = (~torch.isfinite(tensor)).nonzero()
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"{name}[{i}] is {float(tensor[i])}: rewards must be finite")
    return tensor


def _check_number(name: str, value: Any, minimum: float | None = None, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value!r}")
    return float(value)


@dataclass
class RunningMeanStd:
    """Count, mean and sum of squared deviations (M2) of a stream, in float64.

    Batches enter through Chan, Golub and LeVeque's pairwise update (1979; "Updating formulae and a
    pairwise algorithm for computing sample variances"): with delta = mean_b - mean_a and
    n = n_a + n_b, mean = mean_a + delta * n_b / n and M2 = M2_a + M2_b + delta^2 * n_a * n_b / n.
    A batch of one is Welford's (1962) update. Each batch's own M2 is computed around its own mean
    (two passes), so a large common offset does not cancel catastrophically, and two streams seen
    by different processes merge exactly (`merge`, `sync`).
    """

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise ValueError(f"RunningMeanStd.count must be an integer >= 0, got {self.count!r}")
        self.mean = _check_number("RunningMeanStd.mean", self.mean)
        self.m2 = _check_number("RunningMeanStd.m2", self.m2, minimum=0.0)

    def update(self, values: Any) -> "RunningMeanStd":
        """Add a batch (tensor, array, list or number) in place; returns self."""
        batch = _as_float64(values, "values")
        if len(batch) == 0:
            return self
        mean = float(batch.mean())
        merged = self.merge(RunningMeanStd(len(batch), mean, float(((batch - mean) ** 2).sum())))
        self.count, self.mean, self.m2 = merged.count, merged.mean, merged.m2
        return self

    def merge(self, other: "RunningMeanStd") -> "RunningMeanStd":
        """The statistics of both streams together (Chan et al. 1979); neither is changed."""
        if other.count == 0:
            return RunningMeanStd(self.count, self.mean, self.m2)
        if self.count == 0:
            return RunningMeanStd(other.count, other.mean, other.m2)
        count = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / count
        m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / count
        return RunningMeanStd(count, mean, m2)

    @property
    def var(self) -> float:
        """Population variance M2 / n (0 before two values)."""
        return self.m2 / self.count if self.count > 1 else 0.0

    @property
    def sample_var(self) -> float:
        """Unbiased variance M2 / (n - 1) (0 before two values)."""
        return self.m2 / (self.count - 1) if self.count > 1 else 0.0

    @property
    def std(self) -> float:
        return math.sqrt(self.var)

    def to_dict(self) -> dict:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def sync(self, group: Any = None) -> "RunningMeanStd":
        """Merge this process's statistics with every other rank's (torch.distributed), in place.

        Every rank ends with the same statistics. Without an initialised process group this is a no-op.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        gathered: list = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, self.to_dict(), group=group)
        merged = merge_all(RunningMeanStd(**state) for state in gathered)
        self.count, self.mean, self.m2 = merged.count, merged.mean, merged.m2
        return self


def merge_all(stats: Iterable[RunningMeanStd]) -> RunningMeanStd:
    """The statistics of all the streams together."""
    total = RunningMeanStd()
    for part in stats:
        total = total.merge(part)
    return total


class Normalizer(ABC):
    """Maps the rewards 'b' of one `score` call to normalised rewards 'b'."""

    kind: ClassVar[str]
    # Whether each reward is normalised on its own (fixed statistics, clipping), so the result does
    # not depend on what else is in the call or on earlier calls.
    per_input: ClassVar[bool] = True

    @abstractmethod
    def transform(self, rewards: Tensor) -> tuple[Tensor, Tensor | float]:
        """'b' -> ('b' normalised, the factor that scales a reward's standard deviation)."""

    @abstractmethod
    def config(self) -> dict:
        """JSON-serialisable constructor arguments (statistics included)."""

    def __call__(self, rewards: Tensor) -> Tensor:
        return self.transform(rewards)[0]

    def to_config(self) -> dict:
        return {"kind": self.kind, **self.config()}

    def apply(self, out: "RewardOutput") -> "RewardOutput":
        """A copy of `out` with normalised rewards, the raw ones in extras["raw_rewards"] and the
        uncertainty scaled by the same factor (affine normalisers; clipping leaves it)."""
        rewards, factor = self.transform(out.rewards)
        uncertainty = None if out.uncertainty is None else out.uncertainty * factor
        extras = {**(out.extras or {}), "raw_rewards": out.rewards}
        return RewardOutput(rewards.to(out.rewards.dtype), uncertainty, out.step_rewards, out.explanations, extras)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config()})"


def _standardize(rewards: Tensor, mean: float, std: float, eps: float) -> tuple[Tensor, float]:
    scale = std + eps
    return (rewards.double() - mean).div(scale).to(rewards.dtype), 1.0 / scale


class BatchStandardize(Normalizer):
    """(r - mean) / (std + eps) over the rewards of one call: zero mean, unit std per call.

    Depends on what else is in the call (a call with one input always gives 0), so use it
    where rewards are compared within a group (GRPO-style) rather than across calls.
    """

    kind = "batch"
    per_input = False

    def __init__(self, eps: float = 1e-8):
        self.eps = _check_number("BatchStandardize.eps", eps, minimum=0.0, strict=True)

    def transform(self, rewards: Tensor) -> tuple[Tensor, float]:
        values = rewards.double()
        return _standardize(rewards, float(values.mean()), float(values.std(unbiased=False)), self.eps)

    def config(self) -> dict:
        return {"eps": self.eps}


class Clip(Normalizer):
    """Clamp rewards to [low, high] (either may be None: unbounded on that side)."""

    kind = "clip"

    def __init__(self, low: float | None = None, high: float | None = None):
        if low is None and high is None:
            raise ValueError("Clip: give low, high or both")
        self.low = None if low is None else _check_number("Clip.low", low)
        self.high = None if high is None else _check_number("Clip.high", high)
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"Clip: low ({self.low}) > high ({self.high})")

    def transform(self, rewards: Tensor) -> tuple[Tensor, float]:
        return rewards.clamp(self.low, self.high), 1.0

    def config(self) -> dict:
        return {"low": self.low, "high": self.high}


class FixedStandardize(Normalizer):
    """(r - mean) / (std + eps) with statistics measured once on a reference set.

    Build it with `FixedStandardize.measure(rm, prompts, responses)` (scores the reference set
    with the RM's raw rewards) or `FixedStandardize.fit(rewards)`.
    """

    kind = "fixed"

    def __init__(self, mean: float, std: float, eps: float = 1e-8, count: int | None = None):
        self.mean = _check_number("FixedStandardize.mean", mean)
        self.std = _check_number("FixedStandardize.std", std, minimum=0.0, strict=True)
        self.eps = _check_number("FixedStandardize.eps", eps, minimum=0.0)
        self.count = count  # size of the reference set, kept for provenance

    @classmethod
    def fit(cls, rewards: Any, eps: float = 1e-8) -> "FixedStandardize":
        """Mean and population std of reference rewards (at least 2 values, not all equal)."""
        values = _as_float64(rewards, "rewards")
        if len(values) < 2:
            raise ValueError(f"FixedStandardize.fit needs at least 2 reference rewards, got {len(values)}")
        stats = RunningMeanStd().update(values)
        if stats.std == 0.0:
            raise ValueError(f"FixedStandardize.fit: all {len(values)} reference rewards equal "
                             f"{stats.mean}, so there is no spread to standardise by")
        return cls(stats.mean, stats.std, eps=eps, count=stats.count)

    @classmethod
    def measure(cls, rm: "RewardModel", prompts: Sequence[str], responses: Sequence, eps: float = 1e-8,
                **score_kwargs: Any) -> "FixedStandardize":
        """Score a reference set with `rm` (raw, un-normalised rewards) and fit to it."""
        return cls.fit(rm.score(prompts, responses, normalize=False, **score_kwargs).rewards, eps=eps)

    def transform(self, rewards: Tensor) -> tuple[Tensor, float]:
        return _standardize(rewards, self.mean, self.std, self.eps)

    def config(self) -> dict:
        return {"mean": self.mean, "std": self.std, "eps": self.eps, "count": self.count}


class RunningStandardize(Normalizer):
    """Standardise with running statistics that every call first updates (when `update`).

    The statistics are saved with the checkpoint, so a loaded model continues from them;
    `update=False` freezes them. Call `stats.sync()` to merge them across data-parallel ranks.
    """

    kind = "running"

    @property
    def per_input(self) -> bool:
        return not self.update  # updating statistics make a reward depend on every earlier call

    def __init__(self, stats: RunningMeanStd | Mapping | None = None, update: bool = True, eps: float = 1e-8):
        if isinstance(stats, Mapping):
            stats = RunningMeanStd(**stats)
        self.stats = stats if stats is not None else RunningMeanStd()
        self.update = bool(update)
        self.eps = _check_number("RunningStandardize.eps", eps, minimum=0.0, strict=True)

    def transform(self, rewards: Tensor) -> tuple[Tensor, float]:
        if self.update:
            self.stats.update(rewards)
        return _standardize(rewards, self.stats.mean, self.stats.std, self.eps)

    def config(self) -> dict:
        return {"stats": self.stats.to_dict(), "update": self.update, "eps": self.eps}


class Chain(Normalizer):
    """Normalisers applied in order, e.g. `Chain([FixedStandardize(...), Clip(-5, 5)])`."""

    kind = "chain"

    @property
    def per_input(self) -> bool:
        return all(step.per_input for step in self.steps)

    def __init__(self, steps: Sequence[Normalizer | Mapping]):
        if not steps:
            raise ValueError("Chain needs at least one normaliser")
        self.steps = [as_normalizer(step, f"Chain.steps[{i}]") for i, step in enumerate(steps)]

    def transform(self, rewards: Tensor) -> tuple[Tensor, Tensor | float]:
        factor: Tensor | float = 1.0
        for step in self.steps:
            rewards, step_factor = step.transform(rewards)
            factor = factor * step_factor
        return rewards, factor

    def config(self) -> dict:
        return {"steps": [step.to_config() for step in self.steps]}


NORMALIZERS: dict[str, type[Normalizer]] = {
    cls.kind: cls for cls in (BatchStandardize, Clip, FixedStandardize, RunningStandardize, Chain)
}


def as_normalizer(value: Normalizer | Mapping | None, name: str = "normalizer") -> Normalizer | None:
    """A `Normalizer` from itself, None, or its `to_config()` dict (as read from config.json)."""
    if value is None or isinstance(value, Normalizer):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"{name}: expected a Normalizer or a dict with 'kind', got {type(value).__name__}")
    config = dict(value)
    kind = config.pop("kind", None)
    if kind not in NORMALIZERS:
        raise ValueError(f"{name}: unknown normaliser kind {kind!r}; known: {', '.join(sorted(NORMALIZERS))}")
    try:
        return NORMALIZERS[kind](**config)
    except TypeError as err:
        raise ValueError(f"{name} (kind {kind!r}): {err}") from err

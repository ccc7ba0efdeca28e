"""Temperature scaling of preference probabilities (Guo et al. 2017).

Legend: b pairs.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import optimize, special
from torch import Tensor

# log T is searched in this range: T from 0.001 to 1100. With every validation pair ranked
# right the likelihood keeps rising as T -> 0, so the bound is what stops it.
LOG_T_BOUNDS = (-7.0, 7.0)
# Fewest pairs (distinct, with a preference log-odds other than 0) a temperature is fitted on. On
# fewer the fit is noise: one pair ranked right drives T to the lower bound, one ranked wrong to
# the upper one, and ties carry no information about T at all.
MIN_CALIBRATION_PAIRS = 10


class UninformativePairsError(ValueError):
    """Too few calibration pairs whose preference log-odds differ from 0 (the model ties them)."""


def informative(logits: np.ndarray) -> np.ndarray:
    """'b' bool: log-odds that are not 0 up to float error (relative to the largest one)."""
    z = np.abs(np.asarray(logits, dtype=np.float64).ravel())
    return z > 1e-6 * max(1.0, float(z.max(initial=0.0)))


def fit_temperature(logits: Tensor | np.ndarray, min_pairs: int = MIN_CALIBRATION_PAIRS) -> float:
    """T minimising the NLL of sigmoid(logits / T), where 'b' logits are log-odds that the
    preferred response wins (so every label is 1; the swapped orientation has the same NLL).

    Needs at least `min_pairs` log-odds other than 0 (else `UninformativePairsError`); warns when
    the fitted T lands on a search bound (`LOG_T_BOUNDS`), where the likelihood was still rising.
    """
    z = np.asarray(logits, dtype=np.float64).ravel()
    if z.size == 0 or not np.isfinite(z).all():
        raise ValueError(f"fit_temperature needs finite logits, got {z.size} values "
                         f"({int((~np.isfinite(z)).sum())} not finite)")
    useful = int(informative(z).sum())
    if useful < min_pairs:
        raise UninformativePairsError(
            f"fit_temperature: {useful} of {z.size} pairs have a preference log-odds other than 0; "
            f"fitting a temperature needs at least {min_pairs}")

    def nll(log_t: float) -> float:
        return float(-special.log_expit(z / np.exp(log_t)).mean())

    result = optimize.minimize_scalar(nll, bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-6})
    temperature = float(np.exp(result.x))
    best = nll(result.x)

    def at(bound: float) -> bool:  # the likelihood is as high at the bound: still rising (or flat) there
        return nll(bound) - best <= 1e-9 * max(1.0, best)

    low, high = LOG_T_BOUNDS
    if result.x < 0 and at(low):
        warnings.warn(f"fitted temperature T={temperature:.4g} sits at the lower search bound (T >= exp({low:g})): "
                      f"every one of the {z.size} pairs is ranked right, so the likelihood keeps rising as T -> 0 "
                      "and the probabilities become 0/1; calibrate on more (or harder) pairs", stacklevel=2)
    elif result.x > 0 and at(high):
        warnings.warn(f"fitted temperature T={temperature:.4g} sits at the upper search bound (T <= exp({high:g})): "
                      f"the preference log-odds carry no signal on these {z.size} pairs (as many ranked wrong as "
                      "right), so every probability is pushed to 0.5", stacklevel=2)
    return temperature

"""Temperature scaling of preference probabilities (Guo et al. 2017).

Legend: b pairs.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, special
from torch import Tensor

# log T is searched in this range: T from 0.001 to 1100. With every validation pair ranked
# right the likelihood keeps rising as T -> 0, so the bound is what stops it.
LOG_T_BOUNDS = (-7.0, 7.0)


def fit_temperature(logits: Tensor | np.ndarray) -> float:
    """T minimising the NLL of sigmoid(logits / T), where 'b' logits are log-odds that the
    preferred response wins (so every label is 1; the swapped orientation has the same NLL)."""
    z = np.asarray(logits, dtype=np.float64).ravel()
    if z.size == 0 or not np.isfinite(z).all():
        raise ValueError(f"fit_temperature needs finite logits, got {z.size} values "
                         f"({int((~np.isfinite(z)).sum())} not finite)")

    def nll(log_t: float) -> float:
        return float(-special.log_expit(z / np.exp(log_t)).mean())

    result = optimize.minimize_scalar(nll, bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-6})
    return float(np.exp(result.x))

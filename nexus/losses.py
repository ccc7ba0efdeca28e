"""Training losses for reward models: small pure functions of reward tensors.

Shape legend (einops letters):
    b   batch (preference pairs, or scored samples)
    o   objectives (multi-objective reward heads)
    ''  a scalar (0-d tensor)

Every pairwise loss takes ``chosen: 'b'`` and ``rejected: 'b'`` rewards and returns a
scalar ``''`` that is differentiable with respect to both. ``LOSSES`` maps a name to a
pairwise loss so a trainer can select one from its config.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "bradley_terry_loss",
    "bradley_terry_margin_loss",
    "reward_centering_loss",
    "binary_cross_entropy_loss",
    "pairwise_loss",
    "LOSSES",
]


# A position without a label (the ignore_index of token classification): collators write it,
# losses skip it.
IGNORE = -100.0


def _check_same_1d(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    """Raises ValueError unless ``a`` and ``b`` are non-empty 1-D tensors of one shape.

    Equal shapes are required rather than broadcast: a ``(b, 1)`` score head output
    against ``(b,)`` would silently broadcast to ``(b, b)`` and train on wrong pairs.
    """
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} has shape {tuple(a.shape)} but {name_b} has shape {tuple(b.shape)}; "
            "they must be equal 1-D 'b' tensors"
        )
    if a.ndim != 1:
        raise ValueError(
            f"{name_a} and {name_b} must be 1-D 'b' tensors, got shape {tuple(a.shape)}"
        )
    if a.numel() == 0:
        raise ValueError(f"{name_a} and {name_b} are empty; a loss needs at least one element")


def bradley_terry_loss(chosen: Tensor, rejected: Tensor, margin: Tensor | None = None) -> Tensor:
    """Bradley-Terry negative log-likelihood of the chosen response being preferred.

    ``-log sigmoid(chosen - rejected - margin)``, averaged over the batch (Bradley & Terry
    1952; Ouyang et al. 2022 eq. 1). With ``margin`` it is the margin loss of Llama 2
    (Touvron et al. 2023, eq. 2), as in TRL's ``RewardTrainer`` when the dataset has a
    ``margin`` column.

    Args:
        chosen: 'b' rewards of the preferred responses.
        rejected: 'b' rewards of the dispreferred responses.
        margin: 'b' required reward gap per pair, or None for no margin.

    Returns:
        '' mean loss.

    Raises:
        ValueError: if the shapes differ, are not 1-D, or are empty.
    """
    _check_same_1d(chosen, rejected, "chosen", "rejected")
    logits = chosen - rejected
    if margin is not None:
        _check_same_1d(chosen, margin, "chosen", "margin")
        logits = logits - margin
    # logsigmoid, not log(sigmoid(.)): the latter underflows to -inf for logits below ~-100.
    return -F.logsigmoid(logits).mean()


def bradley_terry_margin_loss(
    chosen: Tensor, rejected: Tensor, margin: Tensor | None = None
) -> Tensor:
    """Bradley-Terry loss with a required margin (Touvron et al. 2023, Llama 2 eq. 2).

    Same as ``bradley_terry_loss``, but a missing margin is an error rather than a
    silent fall-back to the plain loss, so a config asking for ``bt_margin`` on a
    dataset without margins fails loudly.

    Args:
        chosen: 'b' rewards of the preferred responses.
        rejected: 'b' rewards of the dispreferred responses.
        margin: 'b' required reward gap per pair.

    Returns:
        '' mean loss.

    Raises:
        ValueError: if ``margin`` is None, or on any shape error of ``bradley_terry_loss``.
    """
    if margin is None:
        raise ValueError("bt_margin loss needs a 'b' margin tensor, got margin=None")
    return bradley_terry_loss(chosen, rejected, margin)


def reward_centering_loss(chosen: Tensor, rejected: Tensor) -> Tensor:
    """Auxiliary loss that pulls rewards towards zero mean: ``mean((chosen + rejected)**2)``.

    Eisenstein et al. 2023 ("Helping or Herding?"), as TRL's
    ``center_rewards_coefficient`` term. BT is invariant to a shift of all rewards; this
    pins the shift. The caller multiplies by the coefficient.

    Args:
        chosen: 'b' rewards of the preferred responses.
        rejected: 'b' rewards of the dispreferred responses.

    Returns:
        '' mean squared pair sum.

    Raises:
        ValueError: if the shapes differ, are not 1-D, or are empty.
    """
    _check_same_1d(chosen, rejected, "chosen", "rejected")
    return ((chosen + rejected) ** 2).mean()


def binary_cross_entropy_loss(
    logits: Tensor, labels: Tensor, weight: Tensor | None = None
) -> Tensor:
    """Binary cross-entropy on reward logits, for outcome and process reward models.

    ``mean(weight * BCE(sigmoid(logits), labels))`` via
    ``F.binary_cross_entropy_with_logits`` (Cobbe et al. 2021 verifiers; Lightman et al.
    2023 PRM). With ``weight`` the mean is over all elements (torch's convention), not
    divided by ``weight.sum()``.

    Args:
        logits: 'b' reward logits.
        labels: 'b' targets in [0, 1]: hard 0/1 labels or soft probabilities.
        weight: 'b' per-element weights, or None.

    Returns:
        '' mean loss.

    Raises:
        ValueError: on shape mismatch, or if a label lies outside [0, 1] (names the index).
    """
    _check_same_1d(logits, labels, "logits", "labels")
    bad = ((labels < 0) | (labels > 1) | labels.isnan()).nonzero()
    if bad.numel():
        i = int(bad[0, 0])
        raise ValueError(f"labels[{i}] = {labels[i].item()!r} is outside [0, 1]")
    if weight is not None:
        _check_same_1d(logits, weight, "logits", "weight")
        weight = weight.to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), weight=weight)


LOSSES: dict[str, Callable[..., Tensor]] = {
    "bt": bradley_terry_loss,
    "bt_margin": bradley_terry_margin_loss,
}


def pairwise_loss(chosen: Tensor, rejected: Tensor, loss: str = "bt", margin: Tensor | None = None,
                  label_smoothing: float = 0.0, center_rewards_coefficient: float | None = None) -> Tensor:
    """The training loss of 'b' rewards of chosen and rejected: `LOSSES[loss]` (the margin is read by
    "bt_margin" only), or with `label_smoothing` the smoothed Bradley-Terry loss of the (margin-shifted)
    log-odds; plus `center_rewards_coefficient` x `reward_centering_loss` where given."""
    margin = margin if loss == "bt_margin" else None
    if label_smoothing:
        logits = chosen - rejected - (margin if margin is not None else 0.0)
        value = weighted_preference_loss(logits.unsqueeze(-1), None, label_smoothing)
    else:
        value = LOSSES[loss](chosen, rejected, margin)
    if center_rewards_coefficient:
        value = value + center_rewards_coefficient * reward_centering_loss(chosen, rejected)
    return value


def probit_preference_logits(mean_a: Tensor, var_a: Tensor, mean_b: Tensor, var_b: Tensor) -> Tensor:
    """Logit of P(a > b) when r_a ~ N(mean_a, var_a) and r_b ~ N(mean_b, var_b), any shape.

    The logistic-Gaussian integral E[sigmoid(r_a - r_b)] approximated as
    sigmoid(mu / sqrt(1 + pi s^2 / 8)) with mu = mean_a - mean_b, s^2 = var_a + var_b
    (MacKay 1992, the probit approximation): variance pulls the probability toward 1/2.
    """
    return (mean_a - mean_b) / torch.sqrt(1.0 + math.pi / 8.0 * (var_a + var_b))


def weighted_preference_loss(logits: Tensor, weights: Tensor | None = None, label_smoothing: float = 0.0) -> Tensor:
    """'b k' logits of P(chosen > rejected) per pair and member -> '' loss.

    Bradley-Terry NLL with optional label smoothing (the label is 1 - eps, for noisy
    preferences) and per-(pair, member) weights, e.g. bootstrap counts (Efron 1979), so
    each ensemble member sees its own resample of the data (Lakshminarayanan et al. 2017).
    """
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing={label_smoothing} must be in [0, 0.5)")
    nll = -(1.0 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    if weights is None:
        return nll.mean()
    if weights.shape != logits.shape:
        raise ValueError(f"weights shape {tuple(weights.shape)} != logits shape {tuple(logits.shape)}")
    per_member = (nll * weights).sum(0) / weights.sum(0).clamp(min=1e-8)
    return per_member.mean()


def multi_objective_bt_loss(chosen: Tensor, rejected: Tensor, labels: Tensor,
                            ignore: float = -100.0) -> tuple[Tensor, Tensor]:
    """One Bradley-Terry loss per objective from per-objective preference labels.

    For objective o and pair i with label y = P(chosen preferred on o) (1, 0, or soft in between),
    the loss is the Bradley-Terry cross-entropy -[y log sigmoid(d) + (1 - y) log sigmoid(-d)] with
    d = chosen[i, o] - rejected[i, o] (Bradley & Terry 1952; per objective as in the
    multi-attribute RMs of Wang et al. 2024, ArmoRM). Entries equal to ``ignore`` are unlabelled
    and masked out. Each objective's loss is the mean over its labelled pairs; the total is the
    mean over the objectives labelled at least once in the batch, so a rarely labelled objective
    weighs as much as a dense one.

    Args:
        chosen: 'b o' rewards of the first response of each pair, per objective.
        rejected: 'b o' rewards of the second response.
        labels: 'b o' in [0, 1], or ``ignore`` where the pair is not labelled on that objective.

    Returns ('' total loss, 'o' per-objective losses, NaN where an objective has no label).
    Raises ValueError for shapes that differ or are not 2-D, a label outside [0, 1] (naming
    [pair, objective]), or a batch without any label.
    """
    if not (chosen.shape == rejected.shape == labels.shape) or chosen.ndim != 2:
        raise ValueError(f"chosen {tuple(chosen.shape)}, rejected {tuple(rejected.shape)} and labels "
                         f"{tuple(labels.shape)} must be equal 'b o' tensors")
    given = labels != ignore
    bad = (given & ((labels < 0) | (labels > 1) | labels.isnan())).nonzero()
    if bad.numel():
        i, o = bad[0].tolist()
        raise ValueError(f"labels[{i}, {o}] = {labels[i, o].item()!r}: expected a value in [0, 1] or {ignore}")
    if not given.any():
        raise ValueError("no pair in the batch is labelled on any objective")
    y = torch.where(given, labels, 0.0).to(chosen.dtype)
    logits = chosen - rejected
    nll = -(y * F.logsigmoid(logits) + (1.0 - y) * F.logsigmoid(-logits))
    mask = given.to(chosen.dtype)
    counts = mask.sum(0)
    per_objective = (nll * mask).sum(0) / counts.clamp(min=1.0)
    total = per_objective[counts > 0].mean()
    return total, torch.where(counts > 0, per_objective, torch.full_like(per_objective, float("nan")))

"""Reward heads on pooled features.

Legend: b batch, d hidden, o objectives.
"""

from __future__ import annotations

from torch import Tensor, nn


class ScalarHead(nn.Module):
    """'b d' -> 'b': Linear -> ReLU -> Dropout -> Linear, the classic RM head.

    `hidden=0` gives a single linear layer (as `AutoModelForSequenceClassification`).
    `out_features > 1` returns 'b o' instead (e.g. a Gaussian head's mean and log-variance).
    """

    def __init__(self, in_features: int, hidden: int = 256, dropout: float = 0.1, out_features: int = 1):
        super().__init__()
        if hidden < 0 or not 0.0 <= dropout < 1.0:
            raise ValueError(f"ScalarHead: hidden={hidden} must be >= 0 and dropout={dropout} in [0, 1)")
        if hidden == 0:
            self.net = nn.Linear(in_features, out_features)
        else:
            self.net = nn.Sequential(
                nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, out_features)
            )

    def forward(self, features: Tensor) -> Tensor:
        out = self.net(features)
        return out.squeeze(-1) if out.shape[-1] == 1 else out


def zero_linear_bias(layer: nn.Linear) -> None:
    """Start a linear reward layer at bias 0. Pairwise losses read reward differences, so they never
    move it; at 0 the rewards are those of a sequence classifier whose score layer has no bias (the
    decoders' layout in transformers), so the RM exports exactly."""
    nn.init.zeros_(layer.bias)


class MultiObjectiveHead(nn.Module):
    """'b d' -> 'b o': one reward per named objective (helpfulness, harmlessness, ...).

    A shared `ScalarHead` trunk with `o` outputs, the layout of multi-objective reward heads such as
    ArmoRM's regression layer (Wang et al. 2024): the objectives share features and differ in their
    last linear layer. The output keeps its 'o' axis even for one objective.
    """

    def __init__(self, in_features: int, objectives: int, hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        if objectives < 1:
            raise ValueError(f"MultiObjectiveHead: objectives={objectives} must be >= 1")
        self.objectives = objectives
        self.net = ScalarHead(in_features, hidden, dropout, out_features=objectives)

    def forward(self, features: Tensor) -> Tensor:
        out = self.net(features)
        return out.unsqueeze(-1) if self.objectives == 1 else out

"""Reward heads on pooled features.

Legend: b batch, d hidden.
"""

from __future__ import annotations

from torch import Tensor, nn


class ScalarHead(nn.Module):
    """'b d' -> 'b': Linear -> ReLU -> Dropout -> Linear, the classic RM head.

    `hidden=0` gives a single linear layer (as `AutoModelForSequenceClassification`).
    """

    def __init__(self, in_features: int, hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        if hidden < 0 or not 0.0 <= dropout < 1.0:
            raise ValueError(f"ScalarHead: hidden={hidden} must be >= 0 and dropout={dropout} in [0, 1)")
        if hidden == 0:
            self.net = nn.Linear(in_features, 1)
        else:
            self.net = nn.Sequential(
                nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1)
            )

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features).squeeze(-1)

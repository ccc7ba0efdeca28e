"""Collators: examples -> padded tensors for the trainer.

Legend: b pairs, n tokens. Chosen and rejected are packed into one '(2 b) n' batch
(chosen first) so one forward pass scores both, as TRL's RewardTrainer does.
"""

from __future__ import annotations

from typing import Sequence

import zlib

import numpy as np
import torch

from nexus.backbones import Backbone
from nexus.data.formats import PairwiseExample


def bootstrap_weights(examples: Sequence[PairwiseExample], n_members: int, seed: int = 0) -> torch.Tensor:
    """'b k' Poisson(1) counts: member k's bootstrap resample of the data (Efron 1979).

    Drawn from a hash of each pair's text, so a pair gets the same counts in every epoch and
    process: each member trains on one fixed resample, as an ensemble of bootstraps should.
    """
    rows = []
    for ex in examples:
        key = zlib.crc32("\x00".join((ex.prompt, ex.chosen, ex.rejected)).encode("utf-8"))
        rows.append(np.random.default_rng([seed, key]).poisson(1.0, n_members))
    return torch.tensor(np.stack(rows), dtype=torch.float32)


class PairwiseCollator:
    """list[PairwiseExample] -> {input_ids '(2 b) n', attention_mask '(2 b) n', margin 'b'?,
    member_weights 'b k'? (with `bootstrap_members`)}."""

    def __init__(self, backbone: Backbone, bootstrap_members: int | None = None, seed: int = 0):
        self.backbone = backbone
        self.bootstrap_members, self.seed = bootstrap_members, seed

    def __call__(self, examples: Sequence[PairwiseExample]) -> dict[str, torch.Tensor]:
        prompts = [ex.prompt for ex in examples]
        responses = [ex.chosen for ex in examples] + [ex.rejected for ex in examples]
        batch = self.backbone.collate(self.backbone.token_ids(prompts + prompts, responses))
        margins = [ex.margin for ex in examples]
        if any(m is not None for m in margins):
            missing = [i for i, m in enumerate(margins) if m is None]
            if missing:
                raise ValueError(f"margin given for some pairs but missing at batch index {missing[0]}")
            batch["margin"] = torch.tensor(margins, dtype=torch.float32)
        if self.bootstrap_members:
            batch["member_weights"] = bootstrap_weights(examples, self.bootstrap_members, self.seed)
        return batch


IGNORE = -100.0  # a position without a label (as the ignore_index of token classification)


def collate_with_labels(backbone: Backbone, ids: list[list[int]], labels: list[list[float]]) -> dict[str, torch.Tensor]:
    """`backbone.collate` plus 'b n' float `labels` laid out like the tokens (cut from the left,
    padded on the backbone's side), IGNORE where a position has no label."""
    batch = backbone.collate(ids)
    width = batch["input_ids"].shape[1]
    out = torch.full((len(ids), width), IGNORE)
    for row, lab in enumerate(labels):
        lab = lab[-backbone.max_length:]
        start = width - len(lab) if backbone.padding_side == "left" else 0
        out[row, start:start + len(lab)] = torch.tensor(lab, dtype=torch.float32)
    batch["labels"] = out
    return batch


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class OutcomeCollator:
    """list[OutcomeExample] -> {input_ids, attention_mask, labels 'b n'}: the outcome label at the
    last token, or with `token_level` at every response token (Cobbe et al. 2021's verifier)."""

    def __init__(self, backbone: Backbone, token_level: bool = False):
        self.backbone, self.token_level = backbone, token_level

    def __call__(self, examples) -> dict[str, torch.Tensor]:
        prompts = [ex.prompt for ex in examples]
        ids = self.backbone.token_ids(prompts, [ex.response for ex in examples])
        starts = None
        if self.token_level:  # where the response starts: past the tokens it shares with the bare prompt
            bare = self.backbone.token_ids(prompts, [""] * len(prompts))
            starts = [min(_common_prefix(seq, b[:-1]), len(seq) - 1) for seq, b in zip(ids, bare)]
        labels = []
        for i, (seq, ex) in enumerate(zip(ids, examples)):
            first = starts[i] if starts else len(seq) - 1
            labels.append([IGNORE] * first + [ex.label] * (len(seq) - first))
        return collate_with_labels(self.backbone, ids, labels)


def supervised_steps(labels: Sequence[float], supervise: str) -> list[bool]:
    """Which steps' labels train the PRM: `all`; `first_error`: up to and including the first
    step labelled wrong (< 0.5), the PRM800K convention; `last`: the final step only."""
    if supervise == "all":
        return [True] * len(labels)
    if supervise == "last":
        return [i == len(labels) - 1 for i in range(len(labels))]
    if supervise == "first_error":
        first = next((i for i, y in enumerate(labels) if y < 0.5), len(labels) - 1)
        return [i <= first for i in range(len(labels))]
    raise ValueError(f"supervise={supervise!r}: expected 'all', 'first_error' or 'last'")


class ProcessCollator:
    """list[ProcessExample] -> {input_ids, attention_mask, labels 'b n'}: each step's label at
    the separator token that ends it (as the model's `supervise` option selects)."""

    def __init__(self, model):
        self.model = model

    def __call__(self, examples) -> dict[str, torch.Tensor]:
        for i, ex in enumerate(examples):
            self.model.check_steps(ex.steps, f"example {i} ({ex.prompt[:30]!r}): steps")
        ids = self.model.step_token_ids([ex.prompt for ex in examples], [ex.steps for ex in examples])
        labels = []
        for seq, ex in zip(ids, examples):
            keep = iter(supervised_steps(ex.labels, self.model.supervise))
            values = iter(ex.labels)
            row = []
            for token in seq:
                if token == self.model.step_id:
                    value, kept = next(values), next(keep)
                    row.append(value if kept else IGNORE)
                else:
                    row.append(IGNORE)
            labels.append(row)
        return collate_with_labels(self.model.backbone, ids, labels)

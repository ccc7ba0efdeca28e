"""Collators: examples -> padded tensors for the trainer.

Legend: b pairs, n tokens, o objectives. Chosen and rejected are packed into one '(2 b) n' batch
(chosen first) so one forward pass scores both, as TRL's RewardTrainer does.
"""

from __future__ import annotations

import json
import warnings
import zlib
from typing import Sequence

import numpy as np
import torch

from nexus.backbones import Backbone
from nexus.batching import shared_prefix_length
from nexus.data.formats import PairwiseExample
from nexus.losses import IGNORE  # noqa: F401  (collated labels use it; importers take it from here)
from nexus.validation import check_positive_int


def bootstrap_weights(examples: Sequence[PairwiseExample], n_members: int, seed: int = 0) -> torch.Tensor:
    """'b k' Poisson(1) counts: member k's bootstrap resample of the data (Efron 1979).

    Drawn from a hash of each pair's text, so a pair gets the same counts in every epoch and
    process: each member trains on one fixed resample, as an ensemble of bootstraps should.
    """
    check_positive_int("n_members", n_members)
    rows = []
    for ex in examples:
        parts = (x if isinstance(x, str) else json.dumps(list(x), sort_keys=True)  # a conversation
                 for x in (ex.prompt, ex.chosen, ex.rejected))
        key = zlib.crc32("\x00".join(parts).encode("utf-8"))
        rows.append(np.random.default_rng([seed, key]).poisson(1.0, n_members))
    return torch.tensor(np.stack(rows), dtype=torch.float32)


class PairwiseCollator:
    """list[PairwiseExample] -> {input_ids '(2 b) n', attention_mask '(2 b) n', margin 'b'?,
    member_weights 'b k'? (with `bootstrap_members`)}.

    With `share_prompts` (and a backbone that `can_pack`) each pair is instead one row `prompt
    chosen rejected` that reads the prompt once (`Backbone.pack`: input_ids 'b n', a 4D
    attention_mask, position_ids, pool_index '(2 b) 2' chosen first, logprob_index), for a model
    whose forward takes them (`ScalarRewardModel`); a batch with a pair over max_length, or
    without a shared token, is collated the plain way.
    """

    def __init__(self, backbone: Backbone, bootstrap_members: int | None = None, seed: int = 0,
                 share_prompts: bool = False):
        self.backbone = backbone
        self.bootstrap_members = check_positive_int("bootstrap_members", bootstrap_members, allow_none=True)
        self.seed = seed
        self.share_prompts = share_prompts

    def _packed(self, prompts: list[str], chosen: list[list[int]], rejected: list[list[int]]) -> dict | None:
        """`Backbone.pack` of one row per pair, outputs reordered to chosen first; None if a pair can't."""
        groups = []
        for c, r in zip(chosen, rejected):
            shared = shared_prefix_length([c, r])
            if shared < 1 or max(len(c), len(r)) > self.backbone.max_length:
                return None
            groups.append((c[:shared], [c[shared:], r[shared:]]))
        batch, b = self.backbone.pack(groups), len(groups)
        batch["pool_index"] = torch.cat([batch["pool_index"][0::2], batch["pool_index"][1::2]])
        index = batch["logprob_index"][:, 3]  # input 2 i + side -> side * b + i
        batch["logprob_index"][:, 3] = (index % 2) * b + index // 2
        return batch

    def __call__(self, examples: Sequence[PairwiseExample]) -> dict[str, torch.Tensor]:
        prompts = [ex.prompt for ex in examples]
        responses = [ex.chosen for ex in examples] + [ex.rejected for ex in examples]
        ids = self.backbone.token_ids(prompts + prompts, responses)
        batch = None
        if self.share_prompts and self.backbone.can_pack:
            batch = self._packed(prompts, ids[:len(examples)], ids[len(examples):])
        batch = batch or self.backbone.collate(ids)
        margins = [ex.margin for ex in examples]
        if any(m is not None for m in margins):
            missing = [i for i, m in enumerate(margins) if m is None]
            if missing:
                raise ValueError(f"margin given for some pairs but missing at batch index {missing[0]}")
            batch["margin"] = torch.tensor(margins, dtype=torch.float32)
        if self.bootstrap_members:
            batch["member_weights"] = bootstrap_weights(examples, self.bootstrap_members, self.seed)
        return batch


def objective_labels(example: PairwiseExample, objectives: Sequence[str], index: int) -> list[float] | None:
    """Per objective, P(chosen preferred) from ``example.extra["labels"]``, IGNORE where unlabelled.

    ``extra["labels"]`` maps objective names to 1 (chosen preferred), 0 (rejected preferred), a
    probability in between, or null (unlabelled); a missing name is unlabelled too. Returns None
    when the pair has no ``labels`` field at all (a plain, overall preference).

    Raises:
        ValueError: naming ``index`` and the key, for an unknown objective, a value that is not null
            or a number in [0, 1], or a pair labelled on no objective.
    """
    if "labels" not in example.extra:
        return None
    given = example.extra["labels"]
    where = f"example {index}: extra['labels']"
    if not isinstance(given, dict):
        raise ValueError(f"{where} is {type(given).__name__}, expected a dict from objective name to 0/1/null")
    unknown = sorted(set(given) - set(objectives))
    if unknown:
        raise ValueError(f"{where}[{unknown[0]!r}]: unknown objective; known: {', '.join(objectives)}")
    row = []
    for name in objectives:
        value = given.get(name)
        if value is None:
            row.append(IGNORE)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"{where}[{name!r}] = {value!r}: expected 1 (chosen preferred), 0 (rejected "
                             "preferred), a probability in between, or null (unlabelled)")
        row.append(float(value))
    if all(v == IGNORE for v in row):
        raise ValueError(f"{where} labels no objective ({', '.join(objectives)}); drop the pair or label one")
    return row


class MultiObjectiveCollator(PairwiseCollator):
    """list[PairwiseExample] -> the `PairwiseCollator` batch plus `preferences` 'b o'
    (`objective_labels` per pair); margins are refused. A pair without ``extra["labels"]`` states
    an overall preference and counts as chosen-preferred on every objective; the first batch with
    such pairs warns once."""

    def __init__(self, backbone: Backbone, objectives: Sequence[str], seed: int = 0):
        super().__init__(backbone, None, seed)
        self.objectives = list(objectives)
        self.warned = False

    def __call__(self, examples: Sequence[PairwiseExample]) -> dict[str, torch.Tensor]:
        batch = super().__call__(examples)
        if "margin" in batch:  # the per-objective loss has no margin term; say so rather than drop it
            first = next(i for i, ex in enumerate(examples) if ex.margin is not None)
            raise ValueError(f"example {first}: margin={examples[first].margin} given, but the multi-objective "
                             "loss does not use margins; remove them (or put them in extra)")
        rows = [objective_labels(ex, self.objectives, i) for i, ex in enumerate(examples)]
        plain = [i for i, row in enumerate(rows) if row is None]
        if plain and not self.warned:
            warnings.warn(f"{len(plain)} of {len(rows)} pairs in a batch (first at index {plain[0]}) have no "
                          "extra['labels']: each counts as chosen-preferred on every objective "
                          "(later batches are not reported)", stacklevel=2)
            self.warned = True
        full = [1.0] * len(self.objectives)
        batch["preferences"] = torch.tensor([full if row is None else row for row in rows], dtype=torch.float32)
        return batch


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

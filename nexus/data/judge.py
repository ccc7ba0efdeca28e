"""Fine-tuning data for the generative judge: verdict next-token targets, optional rationales.

GenRM (Zhang et al. 2024) trains the verifier by next-token prediction of its verdict ("Yes" for a
correct solution, "No" otherwise), and GenRM-CoT first on a verification rationale. The rationale
sits where `explain=True` generates the critique, so the fine-tuned judge is read the same way.
Legend: b batch, n tokens.
"""

from __future__ import annotations

from typing import Callable

import torch

from nexus.conversation import as_plain
from nexus.data.collators import IGNORE, collate_with_labels
from nexus.data.formats import OutcomeExample, PairwiseExample, ProcessExample, process_to_outcome

PAIR_ORDERS = ("both", "random", "first")


# Rationale writers by name: `fn(prompt, response) -> a step-by-step check`. A task package
# registers its own (`register_rationale`); the name "<task>" is looked up in `nexus.tasks.<task>`.
RATIONALES: dict[str, Callable[[str, str], str]] = {}
# Confirmation writers by rationale name: `fn(prompt, response) -> the rationale that rationale's
# writer would give `response` if every step of it were right`. The judge's probability of writing
# it, then the positive verdict, is the reward of `read="confirmation"`.
CONFIRMATIONS: dict[str, Callable[[str, str], str]] = {}


def register_rationale(name: str):
    """Decorator adding a rationale writer to `RATIONALES` under `name`."""
    def add(fn: Callable[[str, str], str]) -> Callable[[str, str], str]:
        RATIONALES[name] = fn
        return fn
    return add


def register_confirmation(rationale: str):
    """Decorator adding the confirmation writer of the rationale `rationale` to `CONFIRMATIONS`."""
    def add(fn: Callable[[str, str], str]) -> Callable[[str, str], str]:
        CONFIRMATIONS[rationale] = fn
        return fn
    return add


def confirmation_writer(rationale: str) -> Callable[[str, str], str]:
    """The confirmation writer of the rationale `rationale` (its task package is imported as
    `rationale_writer` does)."""
    rationale_writer(rationale)
    if rationale not in CONFIRMATIONS:
        raise ValueError(f"rationale={rationale!r} has no confirmation writer, which read='confirmation' needs; "
                         f"rationales that have one: {sorted(CONFIRMATIONS)}")
    return CONFIRMATIONS[rationale]


def rationale_writer(name: str) -> Callable[[str, str], str]:
    """The rationale writer `name`, importing the task package named by its first "_"-separated
    word (`arithmetic`, `arithmetic_solution`: nexus.tasks.arithmetic) if that registers it."""
    if name not in RATIONALES:
        import importlib

        package = name.split("_")[0]  # "arithmetic_solution" is registered by nexus.tasks.arithmetic
        try:
            importlib.import_module(f"nexus.tasks.{package}")
        except ModuleNotFoundError as err:
            if err.name != f"nexus.tasks.{package}":  # the package exists but fails to import
                raise
    if name not in RATIONALES:
        raise ValueError(f"rationale={name!r}: expected None or one of {sorted(RATIONALES)} "
                         "(or a task package nexus.tasks.<name> that registers it)")
    return RATIONALES[name]


class VerdictCollator:
    """list[OutcomeExample | ProcessExample | PairwiseExample] -> {input_ids, attention_mask 'b n',
    labels 'b n' (the target probability of the positive verdict where the next token is the
    verdict, IGNORE elsewhere), verdict_tokens 'b 2' (the positive and negative verdict token of each
    row), and with a rationale lm_targets 'b n' (the next rationale token, then eos where it ends;
    -100 elsewhere)}.

    An outcome example asks the verdict question (positive "Yes", target the label). A process
    example is collapsed to its outcome (`process_to_outcome`: the minimum step label). A pairwise
    example trains the pairwise question `compare` asks (positive "A": the answer shown first is
    better), with the preferred answer first and second (`pair_orders="both"`: two rows, so a
    preference for either position is never rewarded), in one order drawn per example ("random"),
    or always first ("first": the position bias a judge learns from data that always lists the
    better answer first).
    """

    def __init__(self, model, rationale: str | None = None, pair_orders: str = "both", seed: int = 0):
        if pair_orders not in PAIR_ORDERS:
            raise ValueError(f"pair_orders={pair_orders!r}: expected one of {PAIR_ORDERS}")
        self.write_rationale = rationale_writer(rationale) if rationale is not None else None
        self.model, self.rationale, self.pair_orders = model, rationale, pair_orders
        self.rng = torch.Generator().manual_seed(seed)

    def _row(self, i: int, ex: OutcomeExample) -> tuple[list[int], list[float], list[float]]:
        prompt, response = as_plain(ex.prompt), as_plain(ex.response)  # the judge's templates take text
        critique = self.write_rationale(prompt, response).strip() if self.rationale else None
        try:
            ids, span = self.model.verdict_ids(prompt, response, None, critique)
        except ValueError as err:
            raise ValueError(f"example {i} ({prompt[:30]!r}): {err}") from err
        labels = [IGNORE] * (len(ids) - 1) + [ex.label]
        targets = [IGNORE] * len(ids)
        if span is not None:
            start, end = span
            for s in range(start, end):
                targets[s - 1] = float(ids[s])
            targets[end - 1] = float(self.model.backbone.tokenizer.eos_token_id)  # the critique ends here
        return ids, labels, targets

    def _pair_rows(self, ex: PairwiseExample) -> list[tuple[list[int], list[float], list[float]]]:
        prompt, chosen, rejected = (as_plain(x) for x in (ex.prompt, ex.chosen, ex.rejected))
        orders = {"both": [True, False], "first": [True],
                  "random": [bool(torch.randint(2, (), generator=self.rng))]}[self.pair_orders]
        rows = []
        for chosen_first in orders:
            ids = self.model.compare_ids(prompt, *((chosen, rejected) if chosen_first else (rejected, chosen)))
            rows.append((ids, [IGNORE] * (len(ids) - 1) + [float(chosen_first)], [IGNORE] * len(ids)))
        return rows

    def __call__(self, examples) -> dict[str, torch.Tensor]:
        if self.model.mode != "verdict" or self.model.principles:
            raise ValueError("fine-tuning trains the overall verdict: mode='verdict' without principles")
        rows, tokens = [], []
        for i, ex in enumerate(examples):
            ex = process_to_outcome(ex) if isinstance(ex, ProcessExample) else ex
            if isinstance(ex, PairwiseExample):
                pair = self._pair_rows(ex)
                rows += pair
                tokens += [list(self.model.ab_ids)] * len(pair)
            elif isinstance(ex, OutcomeExample):
                rows.append(self._row(i, ex))
                tokens.append(list(self.model.yes_no_ids))
            else:
                raise ValueError(f"example {i} is a {type(ex).__name__}; the judge trains on outcome, process "
                                 "or pairwise data")
        ids = [r[0] for r in rows]
        backbone = self.model.backbone
        batch = collate_with_labels(backbone, ids, [r[1] for r in rows])
        batch["verdict_tokens"] = torch.tensor(tokens, dtype=torch.long)
        if self.rationale:
            # token ids travel as floats (exact below 2**24) through the same cut-and-pad as the labels
            batch["lm_targets"] = collate_with_labels(backbone, ids, [r[2] for r in rows])["labels"].long()
        return batch

"""Batching for `RewardModel.score`: token-budget batches, and inputs grouped by a shared prompt
so that a packed row reads the prompt once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from nexus.conversation import key
from nexus.validation import check_positive_int


def token_budget_batches(lengths: Sequence[int], max_tokens: int, max_padding: float | None = None, *,
                         rows: Sequence[int] | None = None, tokens: Sequence[int] | None = None) -> list[list[int]]:
    """Indices grouped longest first so that rows x the batch's longest row <= `max_tokens`.

    The padded batch is what the backbone computes on, so this bounds the work and memory of every
    batch rather than its row count: short inputs go many to a batch, long ones few. A row longer
    than the budget on its own still has to be scored, so it goes alone.

    With `max_padding` (a fraction in [0, 1)), a batch also ends where adding the next row would
    make more than that fraction of its padded tokens padding. Few inputs of mixed lengths (a
    server's coalesced requests) otherwise pad most rows to one long row; a bound of 0.25 gives
    short rows batches of their own.

    Each index may stand for a unit of several rows that must stay together (a server's request):
    `rows[i]` rows whose longest is `lengths[i]` tokens and which hold `tokens[i]` real tokens in
    all (defaults: one row of `lengths[i]`).
    """
    check_positive_int("max_tokens", max_tokens)
    if max_padding is not None and not 0.0 <= max_padding < 1.0:
        raise ValueError(f"max_padding={max_padding!r}: expected a fraction in [0, 1)")
    rows = [1] * len(lengths) if rows is None else rows
    tokens = lengths if tokens is None else tokens
    batches: list[list[int]] = []
    height = used = 0  # rows and real tokens in the last batch
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        # sorted longest first, so a batch's first unit holds its longest row
        if batches:
            area = (height + rows[i]) * lengths[batches[-1][0]]
            fits = area <= max_tokens
            if fits and max_padding is not None:
                fits = area - (used + tokens[i]) <= max_padding * area
            if fits:
                batches[-1].append(i)
                height, used = height + rows[i], used + tokens[i]
                continue
        batches.append([i])
        height, used = rows[i], tokens[i]
    return batches


def common_prefix_length(ids: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix that every sequence in `ids` starts with."""
    shortest = min(len(seq) for seq in ids)
    for j in range(shortest):
        if any(seq[j] != ids[0][j] for seq in ids):
            return j
    return shortest


def shared_prefix_length(ids: Sequence[Sequence[int]]) -> int:
    """Tokens that can be read once for all of `ids`: their common prefix, leaving each sequence at
    least its last token (where a decoder's reward is read)."""
    return min(common_prefix_length(ids), min(len(seq) for seq in ids) - 1)


# Token budget per packed row batch when `score` shares prompts and no `max_tokens` is given.
PACKED_MAX_TOKENS = 512


@dataclass
class PromptGroup:
    """Inputs of one `score` call that share a prompt: their indices, the token prefix they share
    (read once) and what follows it in each (`RewardModel._score_packed`)."""

    indices: list[int]
    prefix: list[int]
    suffixes: list[list[int]]

    @property
    def tokens(self) -> int:
        return len(self.prefix) + sum(map(len, self.suffixes))


def prompt_groups(prompts: Sequence[str], ids: Sequence[Sequence[int]], max_length: int,
                  max_tokens: int) -> tuple[list[PromptGroup], list[int]]:
    """Split inputs into groups that share a prompt (and a token prefix) and the rest, scored alone.

    Inputs with the same prompt string form a group when there are >= 2 of them, none is over
    `max_length` (those are truncated from the left, which breaks the shared prefix) and they
    share >= 1 token; a group whose packed row would exceed `max_tokens` is cut into several rows,
    each as long as the budget allows (at least one suffix each).
    """
    by_prompt: dict = {}
    for i, prompt in enumerate(prompts):
        by_prompt.setdefault(key(prompt), []).append(i)  # a string or a conversation
    groups, alone = [], []
    for indices in by_prompt.values():
        seqs = [ids[i] for i in indices]
        shared = shared_prefix_length(seqs) if len(seqs) > 1 else 0
        if shared < 1 or max(map(len, seqs)) > max_length:
            alone += indices
            continue
        group = PromptGroup([], list(seqs[0][:shared]), [])
        for i, seq in zip(indices, seqs):
            if group.suffixes and group.tokens + len(seq) - shared > max_tokens:
                groups.append(group)
                group = PromptGroup([], group.prefix, [])
            group.indices.append(i)
            group.suffixes.append(list(seq[shared:]))
        groups.append(group)
    return groups, sorted(alone)

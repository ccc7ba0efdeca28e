"""Token and text plumbing of the generative judge (`nexus/models/generative.py`).

Verdict words are read as single next tokens; each word is spelled bare first ("Yes": the judge's
context always ends where its turn begins, after a newline) and with a leading space second
(" Yes") for tokenizers that only have the spaced form as one token. Generated verdicts are parsed
strictly from the first word; anything else is unreadable (None), never a guess.
Legend: b batch, v vocabulary, c critiques per input, r rating values.
"""

from __future__ import annotations

import re
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

RATINGS = tuple(range(1, 11))  # the rating scale of the `rating` mode: 1 (worst) to 10 (best)


def single_token_id(tokenizer, word: str) -> int | None:
    """The id of `word` as one token, spelled bare first, then with a leading space; None if neither."""
    for spelling in (word, " " + word):
        ids = tokenizer(spelling, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            return ids[0]
    return None


def _spelled(tokenizer, word: str) -> str:
    return ", ".join(f"{s!r} -> {tokenizer.tokenize(s)}" for s in (word, " " + word))


def resolve_word_pair(tokenizer, candidates: Sequence[Sequence[str]],
                      field: str) -> tuple[tuple[str, str], tuple[int, int]]:
    """The first candidate pair of words that are two distinct single tokens, and their ids.

    Args:
        candidates: pairs in order of preference, e.g. [("Yes", "No"), ("Y", "N")].
        field: the argument's name, for the error.

    Raises:
        ValueError: no pair qualifies; names each word that is not a single token and its tokens.
    """
    problems = []
    for i, pair in enumerate(candidates):
        if len(pair) != 2 or not all(isinstance(w, str) and w for w in pair):
            raise ValueError(f"{field}[{i}] = {pair!r}: expected two non-empty words")
        ids = [single_token_id(tokenizer, w) for w in pair]
        if None not in ids and ids[0] != ids[1]:
            return (pair[0], pair[1]), (ids[0], ids[1])
        bad = [f"{field}[{i}][{j}] {w!r} is not a single token ({_spelled(tokenizer, w)})"
               for j, (w, t) in enumerate(zip(pair, ids)) if t is None]
        problems += bad or [f"{field}[{i}] {tuple(pair)!r}: both words are the same token {ids[0]}"]
    raise ValueError("no candidate pair of verdict words can be read as one next token: " + "; ".join(problems))


def rating_token_ids(tokenizer) -> tuple[list[int], int | None]:
    """Ids to read the 1-10 rating: ([id of "1" .. id of "9"] plus "10" where it is one token,
    id of "0" where "10" is spelled "1" then "0" (read at the position after "1"), else None)."""
    ids = []
    for value in RATINGS[:-1]:
        token = single_token_id(tokenizer, str(value))
        if token is None:
            spelled = _spelled(tokenizer, str(value))
            raise ValueError(f"rating {value}: {str(value)!r} is not a single token ({spelled})")
        ids.append(token)
    ten = single_token_id(tokenizer, "10")
    if ten is not None:
        return ids + [ten], None
    zero = tokenizer("10", add_special_tokens=False)["input_ids"]
    if zero[:1] != ids[:1] or len(zero) != 2:
        raise ValueError(f"rating 10: '10' is neither one token nor '1' then '0' ({_spelled(tokenizer, '10')})")
    return ids, zero[1]


def rating_distribution(first: Tensor, rating_ids: Sequence[int], after_one: Tensor | None = None,
                        zero_id: int | None = None) -> Tensor:
    """'b v' logits where the rating starts (and 'b v' after a "1") -> 'b r' P(rating = 1..10).

    The next-token distribution is restricted to the rating tokens and renormalised. Where "10" is
    two tokens, P("1") is split by P("0" | "1"): P(10) = P("1") P("0" | "1"), P(1) = P("1") (1 - P("0" | "1")).
    """
    probs = first.float()[:, list(rating_ids)].softmax(-1)
    if zero_id is None:
        return probs
    q = after_one.float().softmax(-1)[:, zero_id]
    return torch.cat([(probs[:, 0] * (1 - q))[:, None], probs[:, 1:], (probs[:, 0] * q)[:, None]], dim=-1)


def expected_rating(probs: Tensor) -> Tensor:
    """'b r' P(rating) -> 'b' expected rating on the 1-10 scale."""
    return probs @ torch.tensor(RATINGS, dtype=probs.dtype, device=probs.device)


def mean_probability_log_odds(log_odds: Tensor) -> Tensor:
    """'b c' per-critique verdict log-odds -> 'b' log-odds of the mean P(yes) (GenRM-CoT averages
    the verdict probability over sampled rationales, Zhang et al. 2024), computed stably."""
    return torch.logsumexp(F.logsigmoid(log_odds), -1) - torch.logsumexp(F.logsigmoid(-log_odds), -1)


_WORD = re.compile(r"[\W_]*([^\W_]+)")
_NUMBER = re.compile(r"[^\w]*(\d+)(?!\d)")


def parse_verdict(text: str, yes: str, no: str) -> float | None:
    """1.0 if the first word of `text` is `yes`, 0.0 if it is `no` (case and punctuation ignored), else None."""
    match = _WORD.match(text)
    word = match.group(1).lower() if match else ""
    return {yes.lower(): 1.0, no.lower(): 0.0}.get(word)


def parse_rating(text: str) -> float | None:
    """The number `text` starts with (after punctuation such as '**'), if it is a rating 1-10, else None."""
    match = _NUMBER.match(text)
    value = int(match.group(1)) if match else None
    return float(value) if value in RATINGS else None

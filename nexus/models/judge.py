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


def verdict_report(rm, examples, n_bins: int = 10) -> dict[str, float]:
    """How well the verdict predicts outcome labels: AUROC of the rewards, and accuracy at 0.5,
    ECE, Brier and NLL of P(yes) = sigmoid(reward) (verdict mode, logits or confirmation read) against
    hard labels."""
    if rm.mode != "verdict" or rm.read == "generate":
        raise ValueError(f"verdict_report reads P(yes) from log-odds: mode='verdict', read='logits' or 'confirmation' "
                         f"(got mode={rm.mode!r}, read={rm.read!r})")
    rewards = rm.score([ex.prompt for ex in examples], [ex.response for ex in examples]).rewards
    return verdict_metrics(rewards, [ex.label for ex in examples], n_bins)


def verdict_metrics(log_odds, labels, n_bins: int = 10) -> dict[str, float]:
    """`verdict_report`'s metrics from verdict log-odds 'b' and outcome labels 'b' (>= 0.5 is correct)."""
    from nexus import metrics

    rewards = torch.as_tensor(log_odds, dtype=torch.float64)
    labels = (torch.as_tensor(labels, dtype=torch.float64) >= 0.5).double()
    probs = torch.sigmoid(rewards)
    return {"n": len(rewards), "auroc": metrics.auroc(rewards, labels),
            "accuracy": float(((probs >= 0.5).double() == labels).double().mean()),
            "ece": metrics.expected_calibration_error(probs, labels, n_bins, "uniform"),
            "brier": metrics.brier_score(probs, labels), "nll": metrics.negative_log_likelihood(probs, labels),
            "mean_p_yes": float(probs.mean())}


def check_confirmation(mode: str, explain: bool, principles, rationale: str | None) -> None:
    """Raise unless a judge with these options can be read by `confirmation_log_odds`."""
    if mode != "verdict" or explain or principles or rationale is None:
        raise ValueError("read='confirmation' reads the verdict after the rationale's confirming check: it needs "
                         f"mode='verdict', explain=False, no principles and a rationale (got mode={mode!r}, "
                         f"explain={explain}, principles={list(principles)}, rationale={rationale!r})")
    from nexus.data.judge import confirmation_writer

    confirmation_writer(rationale)


def confirmation_log_odds(rm, prompts: Sequence[str], responses: Sequence[str]) -> Tensor:
    """'b' float64: the log-odds of the judge writing the confirming check of each response, then "Yes".

    The check is the one `rm.rationale` trains the judge to write for a right response (its
    confirmation writer), placed where generation would put it and read teacher-forced in one
    forward pass: log p = sum of the check's token log-probabilities, the end of the check (eos, as
    the judge was trained to end it), and log P(yes | yes or no) after it. This is the probability
    of the verified path of GenRM-CoT computed exactly, where sampling checks would estimate the
    verdict average over paths; a judge too weak to write its check greedily can still weigh it.
    """
    from nexus.data.judge import confirmation_writer

    confirm = confirmation_writer(rm.rationale)
    rows = [rm.verdict_ids(p, r, None, confirm(p, r)) for p, r in zip(prompts, responses)]
    eos, (yes, no) = rm.backbone.tokenizer.eos_token_id, rm.yes_no_ids
    values = []
    for first in range(0, len(rows), rm.batch_size):
        chunk = rows[first:first + rm.batch_size]
        batch = rm._left_pad([ids for ids, _ in chunk])  # an over-long context loses its start (warned)
        width = batch["input_ids"].shape[1]
        keep = max(len(ids) - start + 1 for ids, (start, _) in chunk)  # the check, the question, and one before
        if keep > width:
            j = max(range(len(chunk)), key=lambda j: len(chunk[j][0]) - chunk[j][1][0])
            raise ValueError(f"input {first + j}: its confirming check and question ({keep - 1} tokens) do not fit "
                             f"in the judge's {width} positions after the context before them")
        logits = rm._logits(**batch, keep=keep).float()
        norm = logits.logsumexp(-1)  # gathered logits minus this: no second vocabulary-sized tensor
        for j, (ids, (start, end)) in enumerate(chunk):
            at = keep - (len(ids) - start) - 1  # the position whose next token is the check's first
            targets = torch.tensor([*ids[start:end], eos], device=logits.device)
            positions = at + torch.arange(len(targets), device=logits.device)
            path = (logits[j, positions, targets] - norm[j, positions]).double().sum()
            values.append(path + F.logsigmoid(logits[j, -1, yes] - logits[j, -1, no]).double())
    log_p = torch.stack(values).cpu().clamp(max=-1e-12) if values else torch.zeros(0, dtype=torch.float64)
    return log_p - torch.log(-torch.expm1(log_p))

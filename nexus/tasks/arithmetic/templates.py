"""Prompt wordings of the arithmetic task, and the problem-level partition that keeps splits apart.

The same chain can be asked in several ways: the bare expression, an instruction sentence around
it, or a word problem that never writes the expression at all. Models are trained on some
wordings (`SEEN_TEMPLATES`) and evaluated on those and on wordings they never saw
(`UNSEEN_TEMPLATES`), so a reward model that keyed on the prompt's surface form shows it.

Every template renders from (operands, operators) and parses back exactly, so the grader
(`problems.parse_prompt`) reads any templated prompt and no evaluation needs ``eval``.

`partition` assigns every problem (its operands and operators, whatever the wording) to one of
`PARTITIONS` by a hash, so the task LM's training problems, the reward models' training problems
and the evaluation problems are disjoint by construction, at every seed and size.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Callable, Sequence

# Share of the hash space of each partition, in percent: the task LM sees most problems, the RMs
# a fifth, and evaluation the last fifth.
PARTITIONS: dict[str, tuple[int, int]] = {"lm": (0, 60), "rm": (60, 80), "eval": (80, 100)}

_WORD_OPS = {"+": "add {y}", "-": "subtract {y}", "*": "multiply by {y}"}
_WORD_STEP = re.compile(r"(add|subtract|multiply by) ([0-9]+)")
_WORD_OP_OF = {"add": "+", "subtract": "-", "multiply by": "*"}


@dataclass(frozen=True)
class Template:
    """One wording: `render(expression, operands, operators)` and its exact inverse `parse`
    (prompt -> bare expression text, or None when the prompt is not in this wording)."""

    name: str
    render: Callable[[str, Sequence[int], Sequence[str]], str]
    parse: Callable[[str], str | None]


def _sentence(pattern: str) -> Template:
    """A template that writes the bare expression inside a fixed sentence (`{expr}` marks where)."""
    before, after = pattern.split("{expr}")
    matcher = re.compile(re.escape(before) + r"(?P<expr>[0-9()+*\- ]+?)" + re.escape(after), re.ASCII)

    def parse(prompt: str) -> str | None:
        match = matcher.fullmatch(prompt.strip())
        return match.group("expr") if match else None

    return Template("", lambda expr, _o, _p: pattern.format(expr=expr), parse)


def _render_word(expr: str, operands: Sequence[int], operators: Sequence[str]) -> str:
    steps = [_WORD_OPS[op].format(y=y) for op, y in zip(operators, operands[1:])]
    return (f"Start with {operands[0]}. Then {', then '.join(steps)}. "
            "What number do you end up with? Show every step.")


_WORD = re.compile(r"Start with ([0-9]+)\. Then (.+)\. What number do you end up with\? Show every step\.")


def _parse_word(prompt: str) -> str | None:
    """The word problem back to the chain it describes, as a canonical expression."""
    from nexus.tasks.arithmetic.problems import render_expression

    match = _WORD.fullmatch(prompt.strip())
    if match is None:
        return None
    parts = match.group(2).split(", then ")
    steps = [_WORD_STEP.fullmatch(part) for part in parts]
    if not all(steps):
        return None
    operators = [_WORD_OP_OF[s.group(1)] for s in steps]
    return render_expression([int(match.group(1)), *(int(s.group(2)) for s in steps)], operators)


def _named(name: str, template: Template) -> Template:
    return Template(name, template.render, template.parse)


TEMPLATES: dict[str, Template] = {
    "bare": Template("bare", lambda expr, _o, _p: expr, lambda prompt: prompt.strip()),
    "compute": _named("compute", _sentence("Compute {expr}.")),
    "what_is": _named("what_is", _sentence("What is {expr}? Work it out step by step.")),
    "evaluate": _named("evaluate", _sentence("Please evaluate the expression {expr}, one operation per line.")),
    "word": Template("word", _render_word, _parse_word),
}
SEEN_TEMPLATES = ("bare", "compute", "what_is")
UNSEEN_TEMPLATES = ("evaluate", "word")


def check_templates(names: Sequence[str], field: str = "templates") -> tuple[str, ...]:
    """`names` as a tuple, or ValueError naming `field` and the first unknown or repeated name."""
    if isinstance(names, str) or not names:
        raise ValueError(f"{field}: expected a non-empty list of template names from {sorted(TEMPLATES)}")
    for i, name in enumerate(names):
        if name not in TEMPLATES:
            raise ValueError(f"{field}[{i}]={name!r}: expected one of {sorted(TEMPLATES)}")
    if len(set(names)) < len(names):
        raise ValueError(f"{field}={list(names)}: a template is listed twice")
    return tuple(names)


def bare_expression(prompt: str) -> str:
    """The bare expression of a prompt in any of `TEMPLATES` (the prompt itself when bare).

    Sentence templates are tried before the bare one, so a prompt is read in the most specific
    wording it matches; a prompt in no wording comes back stripped, for the expression parser
    to reject with its own message.
    """
    for name, template in TEMPLATES.items():
        if name != "bare":
            expr = template.parse(prompt)
            if expr is not None:
                return expr
    return prompt.strip()


def template_of(prompt: str) -> str:
    """The name of the wording `prompt` is written in ("bare" when it is in none of the others)."""
    for name, template in TEMPLATES.items():
        if name != "bare" and template.parse(prompt) is not None:
            return name
    return "bare"


def problem_key(operands: Sequence[int], operators: Sequence[str]) -> str:
    """The identity of a problem whatever its wording: its operands and operators."""
    return " ".join(f"{op}{y}" for op, y in zip(["", *operators], operands))


def partition(operands: Sequence[int], operators: Sequence[str]) -> str:
    """The partition (`PARTITIONS`) a problem belongs to, from a hash of `problem_key`."""
    digest = hashlib.sha256(problem_key(operands, operators).encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") % 100
    return next(name for name, (lo, hi) in PARTITIONS.items() if lo <= bucket < hi)

"""The built-in ``arithmetic`` workload: chained arithmetic solved one operation per line.

A problem is a left-to-right chain ``v0 op1 a1 op2 a2 ...``. Its prompt is the expression with the
parentheses normal precedence needs (``(23 + 17) * 4 - 9``); its solution is one step per line
(``23 + 17 = 40``, ``40 * 4 = 160``, ``160 - 9 = 151``). Errors are injected at known steps, so every
step and every final answer has a ground-truth label, and ``label_steps`` grades any candidate (a
policy sample, say) step by step. Randomness comes only from ``random.Random`` instances made from
the seed, never from global state, so the same seed gives the same data.

CLI: ``python -m nexus.tasks.arithmetic --out DIR --n N --seed S [--split id|shifted|shifted_ops]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from nexus.data.formats import OutcomeExample, PairwiseExample, ProcessExample, write_jsonl
from nexus.tasks.arithmetic.templates import PARTITIONS, TEMPLATES, bare_expression, check_templates, partition

_OPERATORS = "+-*"
_INT_FIELDS = ("digits", "min_steps", "max_steps", "error_offset_min", "error_offset_max", "error_unit")


@dataclass(frozen=True)
class ArithmeticConfig:
    """Difficulty knobs of the arithmetic task.

    Attributes:
        digits: operand width; operands are uniform on [10**(digits-1), 10**digits - 1], so 1..9
            for one digit. Never 0, so an injected error can never be multiplied away.
        min_steps: fewest operations (= solution steps); a problem has steps + 1 operands.
        max_steps: most operations; the count is uniform on [min_steps, max_steps].
        operators: distinct characters from "+-*", each equally likely at every step.
        error_offset_min: smallest offset an injected error adds to or subtracts from a result.
        error_offset_max: largest such offset.
        error_unit: the offset is counted in these units: 1 changes the last digit; 10 changes the
            tens, as a dropped or spurious carry does, which only a solver that carries can see.
        templates: the prompt wordings (`templates.TEMPLATES`), one drawn uniformly per problem.
        partition: None, or one of `templates.PARTITIONS` ("lm", "rm", "eval"): only problems of
            that partition are drawn, so data drawn for different partitions never share a problem.
    """

    digits: int = 1
    min_steps: int = 2
    max_steps: int = 3
    operators: str = "+-"
    error_offset_min: int = 1
    error_offset_max: int = 3
    error_unit: int = 1
    templates: tuple[str, ...] = ("bare",)
    partition: str | None = None

    def __post_init__(self) -> None:
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ArithmeticConfig.{name}: expected an integer >= 1, got {value!r}")
        if self.max_steps < self.min_steps:
            raise ValueError(f"ArithmeticConfig: max_steps ({self.max_steps}) < "
                             f"min_steps ({self.min_steps})")
        if self.error_offset_max < self.error_offset_min:
            raise ValueError(f"ArithmeticConfig: error_offset_max ({self.error_offset_max}) < "
                             f"error_offset_min ({self.error_offset_min})")
        ops = self.operators
        # Repeats would silently reweight the operator distribution, so they are refused too.
        if not isinstance(ops, str) or not ops or set(ops) - set(_OPERATORS) or len(set(ops)) < len(ops):
            raise ValueError("ArithmeticConfig.operators: expected distinct characters from "
                             f"{_OPERATORS!r}, got {ops!r}")
        object.__setattr__(self, "templates", check_templates(tuple(self.templates), "ArithmeticConfig.templates"))
        if self.partition is not None and self.partition not in PARTITIONS:
            raise ValueError(f"ArithmeticConfig.partition={self.partition!r}: expected None or one of "
                             f"{sorted(PARTITIONS)}")


SPLITS: dict[str, ArithmeticConfig] = {
    "id": ArithmeticConfig(),
    "shifted": ArithmeticConfig(digits=2, min_steps=4, max_steps=5),
    "shifted_ops": ArithmeticConfig(operators="+-*"),
    # The difficulty ladder: one-digit chains, then two-digit ones (carries and borrows), then
    # longer three-digit ones. The task LM learns the first well, the second partly.
    "level1": ArithmeticConfig(),
    "level2": ArithmeticConfig(digits=2, error_unit=10),
    "level3": ArithmeticConfig(digits=3, min_steps=3, max_steps=4, error_unit=10),
}
LEVELS = ("level1", "level2", "level3")


@dataclass(frozen=True)
class ArithmeticProblem:
    """A chain problem with its correct solution; ``steps[i]`` applies ``operators[i]``."""

    prompt: str
    operands: tuple[int, ...]
    operators: tuple[str, ...]
    steps: tuple[str, ...]
    answer: int
    template: str = "bare"


def apply_op(op: str, x: int, y: int) -> int:
    """``x op y`` for op in "+-*"."""
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    raise ValueError(f"unknown operator {op!r}; known: {_OPERATORS!r}")


def format_step(x: int, op: str, y: int, z: int) -> str:
    """One solution line, e.g. ``"3 - 7 = -4"``."""
    return f"{x} {op} {y} = {z}"


def _check_chain(operands: Sequence[int], operators: Sequence[str]) -> None:
    if not operators or len(operands) != len(operators) + 1:
        raise ValueError(f"a chain needs >= 1 operator and one more operand than operators, "
                         f"got {len(operands)} operands and {len(operators)} operators")
    for i, op in enumerate(operators):
        if op not in _OPERATORS:
            raise ValueError(f"operators index {i}: unknown operator {op!r}")


def render_expression(operands: Sequence[int], operators: Sequence[str]) -> str:
    """The chain as text, parenthesised so that normal precedence evaluates it left to right.

    Only a ``*`` after a top-level ``+``/``-`` needs parentheses, around everything before it:
    ``(2 + 3) * 4 - 5``; ``-`` is left-associative, so ``9 - 2 - 3`` needs none.
    """
    _check_chain(operands, operators)
    text, additive = str(operands[0]), False
    for op, y in zip(operators, operands[1:]):
        if op == "*" and additive:
            text, additive = f"({text})", False
        text = f"{text} {op} {y}"
        additive = additive or op in "+-"
    return text


def _true_steps(operands: Sequence[int], operators: Sequence[str]) -> list[tuple[int, str, int, int]]:
    _check_chain(operands, operators)
    value, out = operands[0], []
    for op, y in zip(operators, operands[1:]):
        result = apply_op(op, value, y)
        out.append((value, op, y, result))
        value = result
    return out


def solve(operands: Sequence[int], operators: Sequence[str]) -> tuple[tuple[str, ...], int]:
    """The correct solution lines and the final answer of a chain."""
    steps = _true_steps(operands, operators)
    return tuple(format_step(*s) for s in steps), steps[-1][3]


def make_problem(operands: Sequence[int], operators: Sequence[str], template: str = "bare") -> ArithmeticProblem:
    """Build a problem from explicit operands and operators (e.g. a hand-written example), its
    prompt in the wording `template` (see `templates.TEMPLATES`)."""
    steps, answer = solve(operands, operators)
    if template not in TEMPLATES:
        raise ValueError(f"template={template!r}: expected one of {sorted(TEMPLATES)}")
    prompt = TEMPLATES[template].render(render_expression(operands, operators), operands, operators)
    return ArithmeticProblem(prompt, tuple(operands), tuple(operators), steps, answer, template)


# Draws per problem before a partition is declared unreachable under a config (each partition
# holds at least a fifth of the hash space, so a reachable one is found in a handful).
_MAX_PARTITION_DRAWS = 10_000


def sample_problem(rng: random.Random, cfg: ArithmeticConfig) -> ArithmeticProblem:
    """Draw one problem: step count, operands and operators uniform under ``cfg``, redrawn until
    the problem is in ``cfg.partition`` (if set); its wording uniform over ``cfg.templates``."""
    for _ in range(_MAX_PARTITION_DRAWS):
        n_steps = rng.randint(cfg.min_steps, cfg.max_steps)
        low, high = 10 ** (cfg.digits - 1), 10**cfg.digits - 1
        operands = [rng.randint(low, high) for _ in range(n_steps + 1)]
        operators = [rng.choice(cfg.operators) for _ in range(n_steps)]
        if cfg.partition is None or partition(operands, operators) == cfg.partition:
            break
    else:
        raise ValueError(f"no problem of partition {cfg.partition!r} in {_MAX_PARTITION_DRAWS} draws under {cfg}")
    # One template: no draw, so the bare task's random stream is what it always was.
    template = cfg.templates[0] if len(cfg.templates) == 1 else rng.choice(cfg.templates)
    return make_problem(operands, operators, template)


def inject_error(problem: ArithmeticProblem, rng: random.Random, cfg: ArithmeticConfig,
                 at_step: int | None = None) -> tuple[tuple[str, ...], int]:
    """Corrupt one step's result and carry the wrong value through the rest correctly.

    Step ``k`` (uniform, or ``at_step``) is off by +/- an offset in
    [cfg.error_offset_min, cfg.error_offset_max] times cfg.error_unit; later steps are computed correctly from the
    wrong value, so only step ``k`` is locally wrong. Operands are never 0, so the error reaches
    the final answer (``+``/``-`` keep it, ``* y`` scales it by y >= 1).

    Returns:
        The corrupted solution lines and the error step ``k`` (0-based).
    """
    n = len(problem.steps)
    k = rng.randrange(n) if at_step is None else at_step
    if not isinstance(k, int) or not 0 <= k < n:
        raise ValueError(f"at_step: expected an integer in [0, {n - 1}], got {k!r}")
    offset = rng.randint(cfg.error_offset_min, cfg.error_offset_max) * cfg.error_unit * rng.choice((-1, 1))
    value, steps = problem.operands[0], []
    for i, (op, y) in enumerate(zip(problem.operators, problem.operands[1:])):
        result = apply_op(op, value, y) + (offset if i == k else 0)
        steps.append(format_step(value, op, y, result))
        value = result
    return tuple(steps), k


def step_labels(n_steps: int, error_step: int | None) -> list[float]:
    """Per-step labels: 1.0 before ``error_step``, 0.0 at it and after (all 1.0 if None).

    Steps after the error are arithmetically right but start from a wrong value, so they can no
    longer reach the right answer; like Math-Shepherd (Wang et al. 2023) we label them 0.
    """
    k = n_steps if error_step is None else error_step
    return [1.0] * k + [0.0] * (n_steps - k)


def _check_n_seed(n: int, seed: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n: expected an integer >= 1, got {n!r}")
    # random.Random(-s) equals random.Random(s), so negative seeds would silently repeat data.
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed: expected an integer >= 0, got {seed!r}")


def _problems(n: int, seed: int, cfg: ArithmeticConfig) -> list[ArithmeticProblem]:
    _check_n_seed(n, seed)
    rng = random.Random(seed)
    return [sample_problem(rng, cfg) for _ in range(n)]


def generate(n: int, seed: int, cfg: ArithmeticConfig = ArithmeticConfig()) -> dict[str, list]:
    """All three data formats for ``n`` problems.

    Returns:
        ``{"pairwise": n PairwiseExample (chosen correct, rejected with one injected error),
        "outcome": 2n OutcomeExample (label 1 correct, 0 corrupted), "process": 2n
        ProcessExample (``step_labels``)}``. Outcome and process share one shuffled order.
        ``extra`` holds ``problem_id`` (index of the problem, to split by problem) and
        ``error_step`` (None for a correct solution).
    """
    problems = _problems(n, seed, cfg)  # the same problems as correct_solutions(n, seed, cfg)
    # A separate stream for errors keeps the problems independent of the error draws.
    rng = random.Random(f"nexus.arithmetic.errors:{seed}")
    pairwise, scored = [], []
    for i, problem in enumerate(problems):
        wrong, k = inject_error(problem, rng, cfg)
        pairwise.append(PairwiseExample(problem.prompt, "\n".join(problem.steps), "\n".join(wrong),
                                        extra={"problem_id": i, "error_step": k}))
        scored += [(i, problem.prompt, problem.steps, None), (i, problem.prompt, wrong, k)]
    rng.shuffle(scored)  # unshuffled, labels would alternate 1, 0 and leak through position
    outcome = [OutcomeExample(p, "\n".join(s), 1.0 if k is None else 0.0,
                              extra={"problem_id": i, "error_step": k}) for i, p, s, k in scored]
    process = [ProcessExample(p, s, step_labels(len(s), k),
                              extra={"problem_id": i, "error_step": k}) for i, p, s, k in scored]
    return {"pairwise": pairwise, "outcome": outcome, "process": process}


def correct_solutions(n: int, seed: int,
                      cfg: ArithmeticConfig = ArithmeticConfig()) -> list[tuple[str, str]]:
    """``(prompt, response)`` pairs of correct solutions, for SFT of a policy.

    The problems are those of ``generate(n, seed, cfg)``; use another seed for a disjoint draw.
    """
    return [(p.prompt, "\n".join(p.steps)) for p in _problems(n, seed, cfg)]


_TOKEN = re.compile(r"\s*([0-9]+|[-+*()])", re.ASCII)
# A step line: optionally "Step k:", then "x op y = z" with any spacing.
_STEP = re.compile(r"(?:Step\s*[0-9]+\s*:\s*)?(-?[0-9]+)\s*([-+*])\s*(-?[0-9]+)\s*=\s*(-?[0-9]+)", re.ASCII)
_NUMBER = re.compile(r"-?[0-9]+", re.ASCII)


def _tokenize(prompt: str) -> list[str]:
    text, tokens, pos = prompt.rstrip(), [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            bad = pos + len(text[pos:]) - len(text[pos:].lstrip())
            raise ValueError(f"prompt {prompt!r}: unexpected character {text[bad]!r} "
                             f"at column {bad + 1}")
        tokens.append(match.group(1))
        pos = match.end()
    return tokens


def parse_prompt(prompt: str) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Operands and operators of a prompt written by ``render_expression``, bare or in any of the
    wordings of ``templates.TEMPLATES`` (no ``eval``).

    Raises:
        ValueError: the prompt is not a chain in that canonical form, e.g. ``2 + 3 * 4``, whose
            precedence would not evaluate left to right.
    """
    prompt = bare_expression(prompt)
    tokens = _tokenize(prompt)
    flat = [t for t in tokens if t not in ("(", ")")]
    operands, operators = flat[0::2], flat[1::2]
    if (len(flat) < 3 or len(flat) % 2 == 0 or not all(t.isdigit() for t in operands)
            or not all(t in _OPERATORS for t in operators)):
        raise ValueError(f"prompt {prompt!r}: expected 'number (op number)+' with op in "
                         f"{_OPERATORS!r}")
    values = tuple(int(t) for t in operands)
    canonical = render_expression(values, operators)
    if _tokenize(canonical) != tokens:
        raise ValueError(f"prompt {prompt!r}: not a left-to-right chain in canonical form; "
                         f"expected {canonical!r}")
    return values, tuple(operators)


def parse_steps(response: str) -> list[str]:
    """Split a response into steps, one per line, each stripped of surrounding whitespace.

    Whitespace around the whole response is formatting, not a step (a trailing newline adds
    none). Every other line is a step, empty ones included, so a blank line inside a solution
    is graded as a wrong step rather than skipped. An empty response has no steps.
    """
    text = response.strip()
    return [line.strip() for line in text.split("\n")] if text else []


def parse_step(step: str) -> tuple[int, str, int, int] | None:
    """``(x, op, y, z)`` of a step reading ``x op y = z`` (any spacing, optionally after ``Step k:``), else None."""
    match = _STEP.fullmatch(step.strip())
    if match is None:
        return None
    x, op, y, z = match.groups()
    return int(x), op, int(y), int(z)


def _same_step(step: tuple[int, str, int, int] | None, truth: tuple[int, str, int, int]) -> bool:
    """Whether a parsed step is the true one; ``+`` and ``*`` steps may give their operands in
    either order (``17 + 23 = 40`` solves ``23 + 17``), ``-`` steps may not."""
    if step is None:
        return False
    x, op, y, z = step
    return step == truth or (op in "+*" and (y, op, x, z) == truth)


def label_steps(prompt: str, steps: Sequence[str]) -> list[int]:
    """Grade any candidate solution step by step against the prompt.

    Step i is correct iff it reads ``x op y = z`` (any spacing, optionally after ``Step k:``) with x
    the true running value before step i, op and y the prompt's i-th operation (``+`` and ``*``
    operands in either order) and z the true result. After the first wrong step every
    label is 0 (see ``step_labels``); steps beyond the last operation are wrong. A solution that
    stops early gets 0 on its last step, whose result it presents as the final answer.

    Returns:
        One 0/1 label per step (``[]`` for no steps).
    """
    if isinstance(steps, str):
        raise TypeError("steps: expected a sequence of strings, got str; use parse_steps()")
    truth = _true_steps(*parse_prompt(prompt))
    labels, ok = [], True
    for i, step in enumerate(steps):
        ok = ok and i < len(truth) and _same_step(parse_step(step), truth[i])
        labels.append(int(ok))
    if labels and len(steps) < len(truth):
        labels[-1] = 0
    return labels


def final_answer(response: str) -> int | None:
    """The integer after the last ``=`` on the response's last line, or None if there is none."""
    steps = parse_steps(response)
    if not steps or "=" not in steps[-1]:
        return None
    tail = steps[-1].rsplit("=", 1)[1].strip()
    return int(tail) if _NUMBER.fullmatch(tail) else None


def gold_reward(prompt: str, response: str) -> float:
    """1.0 if the response's final answer is the prompt's true value, else 0.0 (outcome only)."""
    _, answer = solve(*parse_prompt(prompt))
    return 1.0 if final_answer(response) == answer else 0.0


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nexus.tasks.arithmetic",
                                description="Write arithmetic pairwise/outcome/process JSONL files.")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--n", type=int, required=True, help="number of problems")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", choices=sorted(SPLITS), default="id",
                   help="base config; the flags below override its fields")
    for name in _INT_FIELDS:
        p.add_argument("--" + name.replace("_", "-"), type=int, dest=name)
    p.add_argument("--operators", help="distinct characters from '+-*'")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: write DIR/{pairwise,outcome,process}.jsonl and print paths and counts."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    overrides = {name: getattr(args, name) for name in (*_INT_FIELDS, "operators")
                 if getattr(args, name) is not None}
    try:
        cfg = dataclasses.replace(SPLITS[args.split], **overrides)
        data = generate(args.n, args.seed, cfg)
    except ValueError as e:
        parser.error(str(e))
    for kind in ("pairwise", "outcome", "process"):
        path = args.out / f"{kind}.jsonl"
        count = write_jsonl(path, data[kind])
        print(f"{path}\t{count} {kind}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

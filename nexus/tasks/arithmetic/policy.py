"""`ArithmeticPolicy`: the arithmetic task's programmatic solver, wrong at a known rate."""

from __future__ import annotations

import random
from typing import Sequence

from nexus.sampling.policy import Policy, _check
from nexus.tasks.arithmetic import problems as arithmetic


class ArithmeticPolicy(Policy):
    """The arithmetic task's step-by-step solver, wrong at each step with probability `error_rate`.

    A wrong step is off by an offset in [1, `max_offset`] times `error_unit` (either sign): a unit
    of 1 changes the last digit, 10 the tens (a dropped or spurious carry, as the ladder's upper
    levels inject). Later steps are computed correctly from the wrong value, like the task's
    injected errors. `temperature` is ignored:
    the error distribution is what this policy controls. A prefix is continued from the value its
    last step reached, so Math-Shepherd labels can be computed exactly in expectation.

    Steps are independent, so a problem of s steps is solved with every step right with
    probability pass@1 = (1 - error_rate)^s (the final-answer pass rate is a little higher: two
    errors can cancel). `error_rate_for` inverts this; for pass@1 in [0.3, 0.6]:

    | error_rate | 2 steps | 3 steps | 4 steps | 3 or 4 (uniform) |
    |---|---|---|---|---|
    | 0.15 | 0.72 | 0.61 | 0.52 | 0.57 |
    | 0.20 | 0.64 | 0.51 | 0.41 | 0.46 |
    | 0.25 | 0.56 | 0.42 | 0.32 | 0.37 |
    | 0.30 | 0.49 | 0.34 | 0.24 | 0.29 |

    `style_rate` > 0 writes each sample in varied but equivalent formats, so that right solutions
    are not all one string (as a language model's are not): with probability `style_rate` each,
    a sample numbers its lines ("Step 1: 23 + 17 = 40", all lines or none: one layout per
    sample), and each line drops its spaces ("23+17=40") or, for + and * on a non-negative
    running value, commutes its operands ("17 + 23 = 40"). Only forms the task's grader accepts are
    used. Formats come from a random stream of their own, so the values (and which steps are
    wrong) are those of `style_rate=0` with the same seed; 0, the default, gives the samples
    this policy always gave.
    """

    name = "arithmetic"

    def __init__(self, error_rate: float = 0.2, max_offset: int = 3, temperature: float = 1.0,
                 style_rate: float = 0.0, error_unit: int = 1):
        if (not 0.0 <= error_rate <= 1.0 or max_offset < 1 or not 0.0 <= style_rate <= 1.0
                or not isinstance(error_unit, int) or error_unit < 1):
            raise ValueError(f"error_rate={error_rate} and style_rate={style_rate} must be in [0, 1], "
                             f"max_offset={max_offset} and error_unit={error_unit!r} integers >= 1")
        self.error_rate, self.max_offset, self.temperature = error_rate, max_offset, temperature
        self.style_rate, self.error_unit = style_rate, error_unit

    def spec(self) -> dict:
        spec = {"policy": "arithmetic", "error_rate": self.error_rate, "max_offset": self.max_offset}
        if self.style_rate:  # absent at 0, so caches of unstyled samples keep their keys
            spec["style_rate"] = self.style_rate
        if self.error_unit != 1:  # likewise
            spec["error_unit"] = self.error_unit
        return spec

    @staticmethod
    def pass_at_1(error_rate: float, steps: int | Sequence[int]) -> float:
        """P(every step right) = (1 - error_rate)^s, averaged over `steps` (a problem's step count
        uniform over them, as `ArithmeticConfig.min_steps..max_steps` draws it)."""
        counts = [steps] if isinstance(steps, int) else list(steps)
        return sum((1 - error_rate) ** s for s in counts) / len(counts)

    @staticmethod
    def error_rate_for(pass_at_1: float, steps: int | Sequence[int]) -> float:
        """The error_rate whose `pass_at_1` over `steps` is the given one, e.g.
        `error_rate_for(0.45, [3, 4])` for a level of 3 or 4 steps (about 0.205)."""
        if not 0.0 < pass_at_1 <= 1.0:
            raise ValueError(f"pass_at_1={pass_at_1} must be in (0, 1]")
        low, high = 0.0, 1.0  # pass_at_1 falls as error_rate rises: bisect
        for _ in range(60):
            mid = (low + high) / 2
            low, high = (mid, high) if ArithmeticPolicy.pass_at_1(mid, steps) > pass_at_1 else (low, mid)
        return (low + high) / 2

    def _line(self, style: random.Random | None, numbered: bool, k: int, x: int, op: str, y: int, z: int) -> str:
        """Step k (1-based) as text: canonical without `style`, else in a random equivalent format."""
        if style is None:
            return arithmetic.format_step(x, op, y, z)
        if op in "+*" and x >= 0 and style.random() < self.style_rate:
            x, y = y, x  # a negative operand second ("3 + -4") would read as a different step
        line = f"{x}{op}{y}={z}" if style.random() < self.style_rate else arithmetic.format_step(x, op, y, z)
        return f"Step {k}: {line}" if numbered else line

    def complete(self, prompts, prefixes, n, temperature=1.0, seed=0):
        _check(prompts, prefixes, n, temperature)
        out = []
        for i, (prompt, prefix) in enumerate(zip(prompts, prefixes)):
            operands, operators = arithmetic.parse_prompt(prompt)
            done = arithmetic.parse_steps(prefix) if prefix.strip() else []
            value = operands[0]
            if done:
                last = arithmetic.final_answer(prefix)
                value = last if last is not None else value
            rng = random.Random(f"{seed}:{i}:{prompt}:{prefix}")
            # A stream of its own: formats never shift the error draws of `rng`.
            style = random.Random(f"style:{seed}:{i}:{prompt}:{prefix}") if self.style_rate else None
            samples = []
            for _ in range(n):
                current, steps = value, list(done)
                numbered = style is not None and style.random() < self.style_rate
                for op, y in list(zip(operators, operands[1:]))[len(done):]:
                    result = arithmetic.apply_op(op, current, y)
                    if rng.random() < self.error_rate:
                        result += rng.randint(1, self.max_offset) * self.error_unit * rng.choice((-1, 1))
                    steps.append(self._line(style, numbered, len(steps) + 1, current, op, y, result))
                    current = result
                samples.append("\n".join(steps))
            out.append(samples)
        return out

"""`ArithmeticPolicy`: the arithmetic task's programmatic solver, wrong at a known rate."""

from __future__ import annotations

import random

from nexus.sampling.policy import Policy, _check
from nexus.tasks.arithmetic import problems as arithmetic


class ArithmeticPolicy(Policy):
    """The arithmetic task's step-by-step solver, wrong at each step with probability `error_rate`.

    A wrong step is off by an offset in [1, `max_offset`] (either sign); later steps are computed
    correctly from the wrong value, like the task's injected errors. `temperature` is ignored:
    the error distribution is what this policy controls. A prefix is continued from the value its
    last step reached, so Math-Shepherd labels can be computed exactly in expectation.
    """

    name = "arithmetic"

    def __init__(self, error_rate: float = 0.2, max_offset: int = 3, temperature: float = 1.0):
        if not 0.0 <= error_rate <= 1.0 or max_offset < 1:
            raise ValueError(f"error_rate={error_rate} must be in [0, 1] and max_offset={max_offset} >= 1")
        self.error_rate, self.max_offset, self.temperature = error_rate, max_offset, temperature

    def spec(self) -> dict:
        return {"policy": "arithmetic", "error_rate": self.error_rate, "max_offset": self.max_offset}

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
            samples = []
            for _ in range(n):
                current, steps = value, list(done)
                for op, y in list(zip(operators, operands[1:]))[len(done):]:
                    result = arithmetic.apply_op(op, current, y)
                    if rng.random() < self.error_rate:
                        result += rng.randint(1, self.max_offset) * rng.choice((-1, 1))
                    steps.append(arithmetic.format_step(current, op, y, result))
                    current = result
                samples.append("\n".join(steps))
            out.append(samples)
        return out

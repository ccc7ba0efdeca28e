"""Texts on which arithmetic rules (format, math_correct, length, repetition) disagree, for
distilling a rule reward (`nexus.distill`): noisy-solver solutions (`ArithmeticPolicy`) with some
truncated, padded with a repeated line, prefaced with prose or ending in prose."""

from __future__ import annotations

import random

from nexus.tasks.arithmetic import problems as arithmetic
from nexus.tasks.arithmetic.policy import ArithmeticPolicy

PERTURBATIONS = ("clean", "truncate", "repeat", "preamble", "prose")


def perturb(response: str, kind: str, rng: random.Random) -> str:
    """One solution made worse in a way a rule sees (`PERTURBATIONS`): `truncate` drops the last
    step (short; wrong answer), `repeat` repeats a step line (repetition), `preamble` puts a prose
    line first (breaks the format, keeps the answer), `prose` states the answer in words (breaks
    the format and the answer parse)."""
    steps = arithmetic.parse_steps(response)
    if kind == "clean" or not steps:
        return response
    if kind == "truncate":
        return "\n".join(steps[:-1]) if len(steps) > 1 else ""
    if kind == "repeat":
        k = rng.randrange(len(steps))
        return "\n".join(steps[:k + 1] + [steps[k]] * rng.randint(1, 3) + steps[k + 1:])
    if kind == "preamble":
        return "\n".join(["Let me work this out one step at a time."] + steps)
    if kind == "prose":
        answer = steps[-1].rsplit("=", 1)[-1].strip()
        return "\n".join(steps[:-1] + [f"so the result is {answer}, I think"])
    raise ValueError(f"perturbation {kind!r}: expected one of {PERTURBATIONS}")


def arithmetic_texts(n_problems: int, samples: int, seed: int, split: str = "id", error_rate: float = 0.3,
                     perturb_rate: float = 0.5) -> tuple[list[str], list[str], list[str]]:
    """(prompts, responses, references): `samples` noisy-solver solutions per problem, each perturbed
    with probability `perturb_rate` (a uniform kind among the non-clean `PERTURBATIONS`); the
    reference is the true final answer. Deterministic in `seed`."""
    if not 0.0 <= perturb_rate <= 1.0:
        raise ValueError(f"perturb_rate={perturb_rate!r}: expected a probability in [0, 1]")
    problems = arithmetic.generate(n_problems, seed, arithmetic.SPLITS[split])["pairwise"]
    prompts = [p.prompt for p in problems]
    pools = ArithmeticPolicy(error_rate).generate(prompts, samples, seed=seed)
    rng = random.Random(f"nexus.distill:{seed}")
    out_prompts, responses, references = [], [], []
    for prompt, pool in zip(prompts, pools):
        answer = str(arithmetic.solve(*arithmetic.parse_prompt(prompt))[1])
        for response in pool:
            kind = rng.choice(PERTURBATIONS[1:]) if rng.random() < perturb_rate else "clean"
            out_prompts.append(prompt)
            responses.append(perturb(response, kind, rng))
            references.append(answer)
    return out_prompts, responses, references

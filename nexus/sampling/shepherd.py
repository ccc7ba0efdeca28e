"""Automatic step labels by rollouts (Math-Shepherd, Wang et al. 2023).

A step is labelled by completing the solution from it k times with a policy and checking the
final answers: `soft` gives the fraction of completions that reach the right answer, `hard`
gives 1 if any does. Every prefix of every solution is completed in one batched policy call.

A task supplies the correctness check; `nexus.tasks.arithmetic.shepherd` labels the arithmetic
task's policy samples this way (and is a command that writes them).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from nexus.sampling.policy import Policy


def shepherd_labels(policy: Policy, prompts: Sequence[str], solutions: Sequence[Sequence[str]], k: int,
                    is_correct: Callable[[str, str], bool], mode: str = "soft", temperature: float = 1.0,
                    seed: int = 0) -> list[list[float]]:
    """Per solution, one label per step from k rollouts after that step."""
    if mode not in ("soft", "hard"):
        raise ValueError(f"mode={mode!r}: expected 'soft' or 'hard'")
    flat_prompts, prefixes, owners = [], [], []
    for i, (prompt, steps) in enumerate(zip(prompts, solutions)):
        for j in range(len(steps)):
            flat_prompts.append(prompt)
            prefixes.append("\n".join(steps[: j + 1]))
            owners.append(i)
    rollouts = policy.complete(flat_prompts, prefixes, k, temperature, seed)
    labels: list[list[float]] = [[] for _ in solutions]
    for owner, prompt, outs in zip(owners, flat_prompts, rollouts):
        frac = float(np.mean([is_correct(prompt, text) for text in outs]))
        labels[owner].append(frac if mode == "soft" else float(frac > 0))
    return labels

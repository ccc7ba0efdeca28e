"""The judge's verification rationale for arithmetic solutions (GenRM-CoT fine-tuning targets)."""

from __future__ import annotations

from nexus.data.judge import register_rationale
from nexus.tasks.arithmetic import problems as arithmetic


@register_rationale("arithmetic")
def arithmetic_rationale(prompt: str, response: str) -> str:
    """A step-by-step check of an arithmetic solution (the task's exact step labels, written out):
    each step recomputed until the first wrong one, which is named with its correct result."""
    steps = arithmetic.parse_steps(response)
    if not steps:
        return "The answer has no steps."
    truth, _ = arithmetic.solve(*arithmetic.parse_prompt(prompt))
    labels = arithmetic.label_steps(prompt, steps)
    lines = []
    for i, (step, ok) in enumerate(zip(steps, labels)):
        if ok:
            lines.append(f"Step {i + 1}: {step} is right.")
        elif i >= len(truth):
            lines.append(f"Step {i + 1}: {step} is one step too many.")
        elif step == truth[i]:  # right, but the solution ends before the last operation
            lines.append(f"Step {i + 1}: {step} is right, but the solution stops before the last operation.")
        else:
            lines.append(f"Step {i + 1}: {step} is wrong; it should be {truth[i]}.")
        if not ok:
            break
    return "\n".join(lines)

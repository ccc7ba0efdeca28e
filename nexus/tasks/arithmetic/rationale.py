"""The judge's verification rationale for arithmetic solutions (GenRM-CoT fine-tuning targets)."""

from __future__ import annotations

from typing import Callable

from nexus.data.judge import register_confirmation, register_rationale
from nexus.tasks.arithmetic import problems as arithmetic


def _result(step: str) -> str:
    """What a step line writes after its last '=' (the whole line when it has none)."""
    return step.rsplit("=", 1)[-1].strip() if "=" in step else step


def _left(step: str) -> str:
    """A step's 'x op y' with the spacing normalised and any 'Step k:' prefix dropped."""
    body = step.split(":", 1)[-1] if step.lower().startswith("step") else step
    return "".join(body.rsplit("=", 1)[0].split())


def _check(prompt: str, response: str, right: Callable[[str, str], str], wrong: Callable[[str, str], str]) -> str:
    """One line per step of `response` up to its first wrong one: `right(step, true_step)` or
    `wrong(step, true_step)`; steps beyond the last operation are "extra", and a solution that
    stops early ends with "unfinished" after its last (right) step."""
    steps = arithmetic.parse_steps(response)
    if not steps:
        return "no steps"
    truth, _ = arithmetic.solve(*arithmetic.parse_prompt(prompt))
    labels = arithmetic.label_steps(prompt, steps)
    lines = []
    for i, (step, ok) in enumerate(zip(steps, labels)):
        if i >= len(truth):
            lines.append(f"{step} extra")
        elif ok:
            lines.append(right(step, truth[i]))
        elif arithmetic.label_steps(prompt, [*steps[:i + 1], *truth[i + 1:]])[i]:
            lines.append(right(step, truth[i]) + "\nunfinished")  # a right step, but the solution ends after it
        else:
            lines.append(wrong(step, truth[i]))
        if not ok:
            break
    return "\n".join(lines)


@register_rationale("arithmetic")
def arithmetic_rationale(prompt: str, response: str) -> str:
    """A step-by-step check of an arithmetic solution, written so that the task model can produce it.

    Each line first recomputes the step from its operands ("12 + 7 = 19", the task model's own
    solution format, which it already knows how to continue), then compares the solution's result
    with it: "ok", or "not 18" naming what the solution wrote. A step whose operands differ from the
    right ones is quoted whole ("not 12 + 8 = 20"). The check stops at the first wrong step, as the
    step labels do; steps beyond the last operation are "extra", and a solution that stops early
    ends with "unfinished". Computing before judging turns the verdict on each step into comparing
    two numbers the model has just read and written.
    """
    def wrong(step: str, true: str) -> str:
        return f"{true} not {_result(step)}" if _left(step) == _left(true) else f"{true} not {step}"

    return _check(prompt, response, lambda step, true: f"{true} ok", wrong)


@register_confirmation("arithmetic")
def arithmetic_confirmation(prompt: str, response: str) -> str:
    """The check `arithmetic` writes when every step of `response` is right: each step recomputed,
    in the task's own step format, to the result the response gives, then "ok".

    Nothing here reads the prompt's true answer: a judge scored by the probability of writing this
    check (`read="confirmation"`) has to find the recomputed results likely by itself, so a wrong
    step costs the probability of "recomputing" a wrong number, and a solution that stops early or
    runs on costs the probability of ending the check where the response ends.
    """
    lines = []
    for step in arithmetic.parse_steps(response):
        parsed = arithmetic.parse_step(step)
        lines.append(f"{arithmetic.format_step(*parsed) if parsed else step} ok")
    return "\n".join(lines) if lines else "no steps"


@register_rationale("arithmetic_solution")
def arithmetic_solution(prompt: str, response: str) -> str:
    """The correct solution of the prompt, in the task's own step format: what a judge with
    `solve_first` writes before it is shown the response (the response is not read)."""
    return "\n".join(arithmetic.solve(*arithmetic.parse_prompt(prompt))[0])


@register_rationale("arithmetic_marks")
def arithmetic_marks(prompt: str, response: str) -> str:
    """A check that copies each step of the solution and marks it: "12 + 7 = 19 ok", and "no" at
    the first wrong step, where the check stops ("extra" and "unfinished" as in `arithmetic`).

    Unlike `arithmetic`, the judge never writes a number of its own: copying is easy, and each mark
    sits right after the step it judges, so a small model decides it from the few tokens before it
    instead of carrying the comparison to a verdict at the end; the verdict then only has to notice
    a "no" among the marks.
    """
    return _check(prompt, response, lambda step, true: f"{step} ok", lambda step, true: f"{step} no")

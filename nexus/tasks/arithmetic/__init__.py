"""The built-in ``arithmetic`` task: chained arithmetic solved one operation per line.

- `problems`: the generator and the grader (splits, pairs, outcome and process data, step labels,
  the final answer, the gold reward); its names are re-exported here.
- `task_lm`: `arith-lm`, the task's small SFT language model (trained once, cached).
- `policy`: `ArithmeticPolicy`, a solver with a known per-step error rate.
- `rationale`: the judge's step-by-step check of a solution (registered as "arithmetic").

CLI: ``python -m nexus.tasks.arithmetic --out DIR --n N --seed S`` writes the three JSONL files.
"""

from nexus.tasks.arithmetic.problems import (SPLITS, ArithmeticConfig, ArithmeticProblem, apply_op,
                                             correct_solutions, final_answer, format_step, generate,
                                             gold_reward, inject_error, label_steps, make_problem,
                                             parse_prompt, parse_steps, render_expression, sample_problem,
                                             solve, step_labels)
from nexus.tasks.arithmetic.policy import ArithmeticPolicy
from nexus.tasks.arithmetic import rationale  # noqa: F401  (registers the "arithmetic" rationale)

__all__ = ["SPLITS", "ArithmeticConfig", "ArithmeticPolicy", "ArithmeticProblem", "apply_op", "correct_solutions",
           "final_answer", "format_step", "generate", "gold_reward", "inject_error", "label_steps", "make_problem",
           "parse_prompt", "parse_steps", "render_expression", "sample_problem", "solve", "step_labels"]

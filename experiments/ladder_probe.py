"""What the ladder's task LM can check, without training anything:
`python -m experiments.ladder_probe [--pairs 400] [--problems 60]`.

1. Its log-likelihood accuracy on level-2 pairs whose injected error is a carry (the level's own
   error model, offsets of 10-30) and on the same level with last-digit errors (offsets of 1-3).
2. How often its mean response log-likelihood ranks a right solution above a wrong one of the
   same best-of-n pool (level 2, the noisy solver with carry errors), on canonical step lines and
   with the solver's equivalent formats at rate 0.1 and 0.3.
3. How often its greedy continuation of a prompt (in its training format, "<prompt>\n\n") is a
   right solution, per level: what a judge that must first solve the problem itself (a generative
   RM with `solve_first`) can build on.

Prints one line per measurement and writes them to `--out` (JSON) if given.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from nexus.backbones import load_backbone
from nexus.tasks import arithmetic
from nexus.tasks.arithmetic import ArithmeticPolicy
from nexus.tasks.arithmetic.problems import LEVELS
from nexus.tasks.arithmetic.task_lm import ladder_lm_dir, loglik_accuracy
from nexus.tasks.arithmetic.templates import SEEN_TEMPLATES


def error_units(pairs: int) -> dict[str, float]:
    """Log-likelihood accuracy on level-2 pairs with carry errors and with last-digit errors."""
    out = {}
    for name, unit in (("carry errors", 10), ("last-digit errors", 1)):
        task = dataclasses.replace(arithmetic.SPLITS["level2"], error_unit=unit)
        out[name] = loglik_accuracy(ladder_lm_dir(), n=pairs, templates=("bare",), partition="eval", task=task)
    return out


@torch.inference_mode()
def within_pool(problems: int, style_rate: float, samples: int = 8) -> float:
    """P(mean log-likelihood of a right solution > a wrong one's), within pools that have both."""
    task = dataclasses.replace(arithmetic.SPLITS["level2"], templates=SEEN_TEMPLATES, partition="eval")
    prompts = [p.prompt for p in arithmetic.generate(problems, 5, task)["pairwise"]]
    pools = ArithmeticPolicy(0.3, style_rate=style_rate, error_unit=10).generate(prompts, samples, seed=1)
    backbone = load_backbone("arith-lm-ladder", lm_logprobs=True).eval()
    scores = []
    for prompt, pool in zip(prompts, pools):
        gold = np.array([arithmetic.gold_reward(prompt, s) for s in pool])
        if 0 < gold.sum() < len(gold):
            mean = backbone(**backbone.encode([prompt] * len(pool), pool))[:, -2].numpy()
            right, wrong = mean[gold == 1][:, None], mean[gold == 0][None, :]
            scores.append(((right > wrong) + 0.5 * (right == wrong)).mean())
    return float(np.mean(scores))


@torch.inference_mode()
def greedy_solve_rate(problems: int) -> dict[str, float]:
    """Per level, the share of evaluation prompts (seen wordings) whose greedy solution is right."""
    from nexus.models.generative import GenerativeRewardModel

    solver = GenerativeRewardModel(load_backbone("arith-lm-ladder", lm_head=True, lm_logprobs=False),
                                   prompt_dir="compact", explain=True, solve_first=True,
                                   critique_max_tokens=96, batch_size=32).eval()
    out = {}
    for level in LEVELS:
        task = dataclasses.replace(arithmetic.SPLITS[level], templates=SEEN_TEMPLATES, partition="eval")
        prompts = [p.prompt for p in arithmetic.generate(problems, 5, task)["pairwise"]]
        solutions = solver.critique(prompts, prompts)  # solve_first: the "response" is not shown
        out[level] = float(np.mean([arithmetic.gold_reward(p, s[0]) for p, s in zip(prompts, solutions)]))
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--problems", type=int, default=60)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    results = {f"level-2 log-likelihood accuracy, {k}": v for k, v in error_units(args.pairs).items()}
    for rate in (0.0, 0.1, 0.3):
        key = f"within-pool ranking by mean log-likelihood, formats at rate {rate}"
        results[key] = within_pool(args.problems, rate)
    for level, rate in greedy_solve_rate(args.pairs).items():
        results[f"greedy solution right, {level}"] = rate
    for key, value in results.items():
        print(f"{key}: {value:.3f}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()

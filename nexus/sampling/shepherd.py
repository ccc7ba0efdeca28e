"""Automatic step labels by rollouts (Math-Shepherd, Wang et al. 2023).

A step is labelled by completing the solution from it k times with a policy and checking the
final answers: `soft` gives the fraction of completions that reach the right answer, `hard`
gives 1 if any does. Every prefix of every solution is completed in one batched policy call.

Command (writes a process-format JSONL; `extra.true_labels` holds the exact labels):
    python -m nexus.sampling.shepherd --out data/shepherd.jsonl --policy arithmetic --error-rate 0.3
    python -m nexus.sampling.shepherd --out data/shepherd.jsonl --policy arith-lm --temperature 1.0
"""

from __future__ import annotations

import argparse
from typing import Callable, Sequence

import numpy as np

from nexus.data import arithmetic
from nexus.data.formats import ProcessExample, write_jsonl
from nexus.sampling.policy import ArithmeticPolicy, HFPolicy, Policy


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


def arithmetic_correct(prompt: str, response: str) -> bool:
    return arithmetic.gold_reward(prompt, response) == 1.0


def label_policy_samples(policy: Policy, n_problems: int, samples: int, k: int, mode: str = "soft",
                         split: str = "id", seed: int = 0, temperature: float = 1.0) -> list[ProcessExample]:
    """Sample `samples` solutions per arithmetic problem from `policy` and label their steps by rollouts."""
    prompts = [p.prompt for p in arithmetic.generate(n_problems, seed, arithmetic.SPLITS[split])["pairwise"]]
    drawn = policy.generate(prompts, samples, temperature, seed)
    flat = [(p, arithmetic.parse_steps(s) or [""]) for p, ss in zip(prompts, drawn) for s in ss]
    labels = shepherd_labels(policy, [p for p, _ in flat], [s for _, s in flat], k, arithmetic_correct,
                             mode, temperature, seed + 1)
    return [ProcessExample(p, tuple(s), tuple(y), extra={"true_labels": arithmetic.label_steps(p, s)})
            for (p, s), y in zip(flat, labels)]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--policy", default="arithmetic", help="'arithmetic' or a causal LM (e.g. arith-lm, a dir)")
    parser.add_argument("--error-rate", type=float, default=0.3, help="arithmetic policy only")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--n-problems", type=int, default=200)
    parser.add_argument("--samples", type=int, default=4, help="solutions sampled per problem")
    parser.add_argument("--k", type=int, default=8, help="rollouts per step")
    parser.add_argument("--mode", choices=("soft", "hard"), default="soft")
    parser.add_argument("--split", choices=sorted(arithmetic.SPLITS), default="id")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    policy = ArithmeticPolicy(args.error_rate) if args.policy == "arithmetic" else HFPolicy(args.policy)
    data = label_policy_samples(policy, args.n_problems, args.samples, args.k, args.mode, args.split,
                                args.seed, args.temperature)
    write_jsonl(args.out, data)
    agree = np.mean([(y >= 0.5) == bool(t) for ex in data for y, t in zip(ex.labels, ex.extra["true_labels"])])
    print(f"{args.out}: {len(data)} solutions, {sum(len(ex.steps) for ex in data)} steps; "
          f"rollout labels agree with the exact ones on {agree:.1%} of steps")


if __name__ == "__main__":
    main()

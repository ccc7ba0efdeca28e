"""Math-Shepherd step labels for the arithmetic task's policy samples (`nexus.sampling.shepherd`).

Command (writes a process-format JSONL; `extra.true_labels` holds the exact labels):
    python -m nexus.tasks.arithmetic.shepherd --out data/shepherd.jsonl --policy arithmetic --error-rate 0.3
    python -m nexus.tasks.arithmetic.shepherd --out data/shepherd.jsonl --policy arith-lm --temperature 1.0
"""

from __future__ import annotations

import argparse
from typing import Sequence

import numpy as np

from nexus.data.formats import ProcessExample, write_jsonl
from nexus.sampling.policy import HFPolicy, Policy
from nexus.sampling.shepherd import shepherd_labels
from nexus.tasks.arithmetic import problems as arithmetic
from nexus.tasks.arithmetic.policy import ArithmeticPolicy


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

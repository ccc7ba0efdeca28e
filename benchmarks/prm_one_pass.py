"""Process RM: all step scores from one forward pass vs scoring every prefix separately (issue 4).

python -m benchmarks.prm_one_pass [--n 64] [--steps 10] [--backbone arith-lm]

Both paths use the same batched `score` (length-sorted batches, inference mode); the baseline
sends each of a solution's prefixes as its own input and keeps the last step's score, as a PRM
without step tokens must. The step scores agree (checked), and the ratio is measured in one run.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import best_seconds
from nexus.backbones import load_backbone
from nexus.data.arithmetic import ArithmeticConfig, generate
from nexus.models.process import ProcessRewardModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="solutions")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--backbone", default="arith-lm")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = ArithmeticConfig(min_steps=args.steps, max_steps=args.steps)
    data = generate(args.n, seed=3, cfg=cfg)["process"][: args.n]
    rm = ProcessRewardModel(load_backbone(args.backbone, lm_logprobs=True)).eval()
    prompts, solutions = [ex.prompt for ex in data], [list(ex.steps) for ex in data]
    prefix_prompts = [p for p, s in zip(prompts, solutions) for _ in s]
    prefixes = [s[: j + 1] for s in solutions for j in range(len(s))]

    def one_pass():
        return torch.cat(rm.score(prompts, solutions).step_rewards)

    def per_prefix():
        return torch.stack([r[-1] for r in rm.score(prefix_prompts, prefixes).step_rewards])

    torch.testing.assert_close(one_pass(), per_prefix(), atol=1e-4, rtol=0)
    fast, slow = best_seconds(one_pass, args.repeats), best_seconds(per_prefix, args.repeats)
    print(f"{args.n} solutions of {args.steps} steps, backbone {args.backbone}, {torch.get_num_threads()} threads")
    print(f"one pass   : {fast:.3f} s ({args.n * args.steps / fast:.0f} step scores/s)")
    print(f"per prefix : {slow:.3f} s ({args.n * args.steps / slow:.0f} step scores/s)")
    print(f"ratio (per prefix / one pass): {slow / fast:.2f}x")


if __name__ == "__main__":
    main()

"""Process RM: all step scores from one forward pass vs scoring every prefix separately.

python -m benchmarks.prm_one_pass [--n 64] [--steps 10] [--backbone arith-lm]

Both paths use the same batched `score` (length-sorted batches, inference mode); the baseline
sends each of a solution's prefixes as its own input and keeps the last step's score, as a PRM
without step tokens must. The step scores agree (checked), and the ratio is measured in one run.
FLOPs: the backbone's over the sequences each path reads (`roofline`).
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import Row, benchmark_parser, best_seconds, report, threads_note
from benchmarks.roofline import FlopModel, achieved, matmul_peak_gflops
from nexus.backbones import load_backbone
from nexus.tasks.arithmetic import ArithmeticConfig, generate
from nexus.models.process import ProcessRewardModel


def run(args) -> list[Row]:
    peak = args.peak or matmul_peak_gflops()
    cfg = ArithmeticConfig(min_steps=args.steps, max_steps=args.steps)
    data = generate(args.n, seed=3, cfg=cfg)["process"][: args.n]
    rm = ProcessRewardModel(load_backbone(args.backbone, lm_logprobs=True)).eval()
    flops = FlopModel.fit(rm.backbone)
    prompts, solutions = [ex.prompt for ex in data], [list(ex.steps) for ex in data]
    prefix_prompts = [p for p, s in zip(prompts, solutions) for _ in s]
    prefixes = [s[: j + 1] for s in solutions for j in range(len(s))]

    def one_pass():
        return torch.cat(rm.score(prompts, solutions).step_rewards)

    def per_prefix():
        return torch.stack([r[-1] for r in rm.score(prefix_prompts, prefixes).step_rewards])

    torch.testing.assert_close(one_pass(), per_prefix(), atol=1e-4, rtol=0)
    fast, slow = best_seconds(one_pass, args.repeats), best_seconds(per_prefix, args.repeats)
    fast_flops = flops.sequences(map(len, rm.step_token_ids(prompts, solutions)))
    slow_flops = flops.sequences(map(len, rm.step_token_ids(prefix_prompts, prefixes)))
    scores = args.n * args.steps
    rows = [Row("prm", "per prefix", slow, f"{scores / slow:.0f} step scores/s", "baseline",
                achieved(slow_flops, slow, peak)),
            Row("prm", "one pass", fast, f"{scores / fast:.0f} step scores/s", f"{slow / fast:.2f}x",
                achieved(fast_flops, fast, peak), "target >= 5x")]
    return report(rows, f"{args.n} solutions of {args.steps} steps, backbone {args.backbone}, {threads_note()}")


def parser() -> argparse.ArgumentParser:
    p = benchmark_parser(__doc__, repeats=3)
    p.add_argument("--n", type=int, default=64, help="solutions")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--backbone", default="arith-lm")
    return p


def main(argv=None) -> list[Row]:
    return run(parser().parse_args(argv))


if __name__ == "__main__":
    main()

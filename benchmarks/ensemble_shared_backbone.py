"""Shared-backbone ensemble vs K independent backbones: scoring time on the same inputs (issue 3).

python -m benchmarks.ensemble_shared_backbone [--k 8] [--n 512] [--backbone arith-lm]

Prints the seconds of each and the ratio, measured in the same run (best of `--repeats`).
"""

from __future__ import annotations

import argparse
import time

import torch

from nexus.backbones import load_backbone
from nexus.data.arithmetic import SPLITS, generate
from nexus.models.ensemble import EnsembleRewardModel
from nexus.models.scalar import ScalarRewardModel


def best_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--backbone", default="arith-lm")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    pairs = generate(args.n, seed=7, cfg=SPLITS["id"])["pairwise"]
    prompts, responses = [p.prompt for p in pairs], [p.chosen for p in pairs]
    shared = EnsembleRewardModel(load_backbone(args.backbone), n_members=args.k).eval()
    separate = [ScalarRewardModel(load_backbone(args.backbone)).eval() for _ in range(args.k)]
    shared_s = best_seconds(lambda: shared.score(prompts, responses), args.repeats)
    separate_s = best_seconds(lambda: torch.stack([m.score(prompts, responses).rewards for m in separate]),
                              args.repeats)
    print(f"K={args.k}, {args.n} inputs, backbone {args.backbone}, {torch.get_num_threads()} threads")
    print(f"shared backbone, K heads : {shared_s:.3f} s ({args.n / shared_s:.0f} responses/s)")
    print(f"K independent backbones  : {separate_s:.3f} s ({args.n / separate_s:.0f} responses/s)")
    print(f"ratio (independent / shared): {separate_s / shared_s:.2f}x")


if __name__ == "__main__":
    main()

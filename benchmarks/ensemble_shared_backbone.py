"""Ensemble member forms: scoring time of K members on the same inputs (issue 3).

python -m benchmarks.ensemble_shared_backbone [--k 8] [--n 512] [--backbone arith-lm]

Times `EnsembleRewardModel` with `form=shared` (K heads, one backbone pass), `form=lora`
(K adapters on one base: K passes) and `form=independent` (K backbones of the same size) and
prints each against the shared form, measured in the same run (best of `--repeats`).
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import best_seconds
from nexus.backbones import load_backbone
from nexus.data.arithmetic import SPLITS, generate
from nexus.models.ensemble import EnsembleRewardModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--backbone", default="arith-lm")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    pairs = generate(args.n, seed=7, cfg=SPLITS["id"])["pairwise"]
    prompts, responses = [p.prompt for p in pairs], [p.chosen for p in pairs]
    forms = {
        "shared": EnsembleRewardModel(load_backbone(args.backbone), n_members=args.k, form="shared"),
        "lora": EnsembleRewardModel(load_backbone(args.backbone, lora={"r": 8, "alpha": 16}), n_members=args.k,
                                    form="lora"),
        "independent": EnsembleRewardModel(load_backbone(args.backbone), n_members=args.k, form="independent"),
    }
    seconds = {name: best_seconds(lambda rm=rm.eval(): rm.score(prompts, responses), args.repeats)
               for name, rm in forms.items()}
    print(f"K={args.k}, {args.n} inputs, backbone {args.backbone}, {torch.get_num_threads()} threads")
    for name, s in seconds.items():
        print(f"form={name:<12} {s:.3f} s ({args.n / s:.0f} responses/s), {s / seconds['shared']:.2f}x shared")
    print(f"ratio (independent / shared): {seconds['independent'] / seconds['shared']:.2f}x")


if __name__ == "__main__":
    main()

"""Ensemble member forms: scoring time of K members on the same inputs.

python -m benchmarks.ensemble_shared_backbone [--k 8] [--n 512] [--backbone arith-lm]

Times a single `ScalarRewardModel` (the baseline of the target: K=8 shared members cost
at most 1.3x one model) and `EnsembleRewardModel` with `form=shared` (K heads, one backbone pass),
`form=lora` (K adapters on one base: K passes) and `form=independent` (K backbones of the same
size), all on the same backbone and inputs through `score`, measured in the same run (best of
`--repeats`). FLOPs: the backbone passes each form makes (`roofline`; heads and LoRA left out).
"""

from __future__ import annotations

import argparse

from benchmarks.common import Row, benchmark_parser, best_seconds, report, threads_note
from benchmarks.roofline import FlopModel, achieved, matmul_peak_gflops
from nexus.backbones import load_backbone
from nexus.tasks.arithmetic import SPLITS, generate
from nexus.models.ensemble import EnsembleRewardModel
from nexus.models.scalar import ScalarRewardModel


def run(args) -> list[Row]:
    peak = args.peak or matmul_peak_gflops()
    pairs = generate(args.n, seed=7, cfg=SPLITS["id"])["pairwise"][: args.n]
    prompts, responses = [p.prompt for p in pairs], [p.chosen for p in pairs]
    backbone = load_backbone(args.backbone)
    flops = FlopModel.fit(backbone)
    one_pass = flops.sequences([len(ids) for ids in backbone.token_ids(prompts, responses)])
    models = {  # name: (model, backbone passes)
        "single scalar model": (ScalarRewardModel(backbone, batch_size=args.batch_size), 1),
        "shared": (EnsembleRewardModel(backbone, n_members=args.k, form="shared", batch_size=args.batch_size), 1),
        "lora": (EnsembleRewardModel(load_backbone(args.backbone, lora={"r": 8, "alpha": 16}), n_members=args.k,
                                     form="lora", batch_size=args.batch_size), args.k),
        "independent": (EnsembleRewardModel(load_backbone(args.backbone), n_members=args.k, form="independent",
                                            batch_size=args.batch_size), args.k),
    }
    seconds = {}
    for name, (rm, _) in models.items():
        rm.eval().score(prompts[:8], responses[:8])  # warm-up, untimed
        # every input alone, as the ensemble reads them (the scalar RM would pack shared prompts)
        seconds[name] = best_seconds(lambda rm=rm: rm.score(prompts, responses, share_prompts=False)
                                     if rm.packs_prompts else rm.score(prompts, responses), args.repeats)
    single = seconds["single scalar model"]
    rows = []
    for name, (_, passes) in models.items():
        case = name if name == "single scalar model" else f"form={name}, K={args.k}"
        ratio = "baseline" if name == "single scalar model" else f"{seconds[name] / single:.2f}x single model"
        note = "target <= 1.3x" if name == "shared" else ""
        rows.append(Row("ensemble", case, seconds[name], f"{args.n / seconds[name]:.0f} responses/s", ratio,
                        achieved(passes * one_pass, seconds[name], peak), note))
    print(f"ratio (independent / shared): {seconds['independent'] / seconds['shared']:.2f}x")
    return report(rows, f"ensemble forms, K={args.k}, {args.n} inputs, backbone {args.backbone}, {threads_note()}")


def parser() -> argparse.ArgumentParser:
    p = benchmark_parser(__doc__, repeats=3)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--n", type=int, default=512)
    p.add_argument("--backbone", default="arith-lm")
    p.add_argument("--batch-size", type=int, default=32)
    return p


def main(argv=None) -> list[Row]:
    return run(parser().parse_args(argv))


if __name__ == "__main__":
    main()

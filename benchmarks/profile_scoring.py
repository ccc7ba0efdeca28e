"""Where the scalar RM's scoring time goes: a `torch.profiler` table by operator.

python -m benchmarks.profile_scoring [--n 64] [--backbone smollm2-135m] [--max-tokens 512] [--share-prompts]
                                     [--family scalar] [--lm-logprobs] [--set key=value ...]

Profiles one `score` call of the `--family` RM (its YAML, with `--set` overrides: e.g. `--family
generative --lm-logprobs --set read=generate` for the judge's generate-and-parse path) on `--n`
mixed-length responses (`common.mixed_pairs`) after a warm-up call, and prints the operators that take the most CPU time with their share of the call, then the
matmuls' own GFLOP/s (their FLOPs from the profiler's shape records: 2 m k n per `mm`/`addmm`,
per row for `bmm`) against this machine's measured matmul peak. This is the profile the benchmark
README cites where a target is missed: it separates time lost in the matmuls (their rate) from
time spent outside them (attention, element-wise ops, Python, tokenisation).
"""

from __future__ import annotations

import argparse
import time

from torch.profiler import ProfilerActivity, profile

from benchmarks.common import benchmark_parser, mixed_pairs, pair_inputs, threads_note
from benchmarks.roofline import matmul_peak_gflops
from benchmarks.scoring import build_family
from nexus.backbones import load_backbone

MATMULS = ("aten::mm", "aten::addmm", "aten::bmm")


def matmul_flops(event) -> float:
    """2 m k n of one recorded matmul from its input shapes (addmm: bias, a, b; bmm: batched)."""
    shapes = [s for s in event.input_shapes if s]
    if event.name == "aten::addmm":
        shapes = shapes[1:]
    (a, b) = shapes[:2]
    rows = a[0] if len(a) == 3 else 1
    return 2.0 * rows * a[-2] * a[-1] * b[-1]


def main(argv=None) -> None:
    p = benchmark_parser(__doc__, repeats=None)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--backbone", default="smollm2-135m")
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--share-prompts", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--family", default="scalar", help="a model YAML of experiments/conf/model/")
    p.add_argument("--lm-logprobs", action="store_true", help="load the backbone with its LM head (the judge)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of the family's YAML")
    p.add_argument("--rows", type=int, default=12, help="operators listed")
    args = p.parse_args(argv)
    peak = args.peak or matmul_peak_gflops()
    rm = build_family(args.family, load_backbone(args.backbone, lm_logprobs=args.lm_logprobs), overrides=args.set)
    prompts, responses = pair_inputs(mixed_pairs(args.n // 2))
    options = {"max_tokens": args.max_tokens} | ({"share_prompts": args.share_prompts} if rm.packs_prompts else {})
    call = lambda: rm.score(prompts, responses, **options)  # noqa: E731
    call()  # warm-up
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        start = time.perf_counter()
        call()
        seconds = time.perf_counter() - start
    events = prof.key_averages()
    total_us = seconds * 1e6
    print(f"{args.family} {' '.join(args.set)} score on {len(prompts)} responses, {args.backbone}, {options}, "
          f"{threads_note()}: {seconds:.2f} s (profiled); matmul peak {peak:.1f} GFLOP/s")
    print(f"  {'operator':<44} {'self CPU s':>10} {'share':>6} {'calls':>7}")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:args.rows]:
        print(f"  {e.key[:44]:<44} {e.self_cpu_time_total / 1e6:>10.2f} {e.self_cpu_time_total / total_us:>6.0%} "
              f"{e.count:>7}")
    mm_us = sum(e.self_cpu_time_total for e in events if e.key in MATMULS)
    mm_flops = sum(matmul_flops(e) for e in prof.events() if e.name in MATMULS and e.input_shapes)
    print(f"  matmuls: {mm_us / total_us:.0%} of the call at {mm_flops / mm_us / 1e3:.1f} GFLOP/s "
          f"({mm_flops / mm_us / 1e3 / peak:.0%} of peak); everything else: {1 - mm_us / total_us:.0%}")


if __name__ == "__main__":
    main()

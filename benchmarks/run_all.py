"""Every benchmark in sequence, with one measured matmul peak; what `make bench` runs.

python -m benchmarks.run_all [--quick] [--out benchmarks/results.md] [--only scoring best_of_n ...]

Prints each benchmark's figures as it goes and writes all rows as one Markdown table to `--out`.
Defaults are the issue's sizes (512 mixed-length responses on SmolLM2-135M, N=16, K=8, 10-step
PRM solutions): about 35 minutes on 2 CPU cores. `--quick` shrinks every size and uses the
`arith-lm` backbone (minutes), for checking that everything runs, not for the figures.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import time
from pathlib import Path

import torch

from benchmarks.common import markdown
from benchmarks.roofline import matmul_peak_gflops

HERE = Path(__file__).resolve().parent
# name -> (module, arguments at the sizes, arguments of --quick)
BENCHMARKS = {
    "scoring": ("benchmarks.scoring", [], ["--n", "64", "--backbone", "arith-lm", "--probe-pairs", "32"]),
    "training": ("benchmarks.training", [], ["--pairs", "16", "--steps", "2"]),
    "best_of_n": ("benchmarks.best_of_n", [], ["--prompts", "2", "--backbone", "arith-lm"]),
    "ensemble": ("benchmarks.ensemble_shared_backbone", [], ["--n", "64"]),
    "prm": ("benchmarks.prm_one_pass", [], ["--n", "16"]),
    "generative": ("benchmarks.generative_verdict", [], ["--n", "8", "--backbone", "tiny-llama", "--repeats", "1"]),
    "genrm_cot": ("benchmarks.genrm_cot", [], ["--n", "16", "--repeats", "1", "--rationale-tokens", "16",
                                                  "--train-steps", "2"]),
    "scaling": ("benchmarks.scaling", [], ["--backbone", "arith-lm", "--repeats", "1", "--batch-sizes", "1", "4", "16",
                                           "--ns", "2", "8", "32"]),
    "sandbox": ("benchmarks.sandbox", [], ["--problems", "16"]),
    "long_inputs": ("benchmarks.long_inputs", [], ["--chars", "100000"]),
    "serve_load": ("benchmarks.serve_load", [], ["--backbone", "tiny-gpt2", "--requests", "32", "--clients", "1", "8",
                                                 "--rounds", "1"]),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes on arith-lm: a smoke run")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    parser.add_argument("--out", default=str(HERE / "results.md"))
    args = parser.parse_args(argv)
    peak = matmul_peak_gflops()
    print(f"fp32 matmul peak {peak:.1f} GFLOP/s, {torch.get_num_threads()} threads\n", flush=True)
    rows, started = [], time.perf_counter()
    for name in args.only:
        module, full, quick = BENCHMARKS[name]
        print(f"== {name}", flush=True)
        rows += importlib.import_module(module).main([*(quick if args.quick else full), "--peak", str(peak)])
        print(flush=True)
    # This machine's throughput drifts (a shared VM); a peak below what a row reached would print
    # over 100%, so probe again at the end and price every row against the higher of the two.
    end_peak = matmul_peak_gflops()
    print(f"fp32 matmul peak at the end {end_peak:.1f} GFLOP/s (start {peak:.1f}); fractions in {args.out} "
          f"use {max(peak, end_peak):.1f}")
    rows = [row.with_peak(max(peak, end_peak)) for row in rows]
    header = (f"# Benchmark results\n\n{platform.processor() or platform.machine()}, {torch.get_num_threads()} "
              f"threads, torch {torch.__version__}; fp32 matmul peak {max(peak, end_peak):.1f} GFLOP/s (the higher "
              f"of {peak:.1f} at the start and {end_peak:.1f} at the end); "
              f"{'--quick sizes; ' if args.quick else ''}{time.perf_counter() - started:.0f} s in all. "
              "Written by `python -m benchmarks.run_all`.\n\n")
    Path(args.out).write_text(header + markdown(rows) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

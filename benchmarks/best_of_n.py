"""Best-of-N scoring with the shared prompt encoded once vs N times.

python -m benchmarks.best_of_n [--n 16] [--prompts 4] [--prompt-ratio 4] [--backbone smollm2-135m]

Each prompt is a few-shot arithmetic context (solved examples, then the problem) grown until it
has about `--prompt-ratio` times the tokens of a candidate; the N candidates are the correct
solution and solutions with one injected error. Baseline: `rm.score([prompt] * N, candidates)`
(every candidate re-reads the prompt). Fast path: `rm.score_candidates(prompt, candidates)`, which
packs the candidates into rows that read their common token prefix once (`Backbone.pack`; what
`score` does by default). The rewards agree (checked, max difference printed); FLOPs are each
path's own (`roofline`). (A KV-cache path, the prefix run once and the candidates continued from
its cache, measured 3.98x here against the packed rows' 4.39x, and was removed for them.)
"""

from __future__ import annotations

import argparse
import random

import torch

from benchmarks.common import Row, benchmark_parser, best_seconds, report, threads_note
from benchmarks.roofline import FlopModel, achieved, matmul_peak_gflops
from benchmarks.scoring import build_family
from nexus.backbones import load_backbone
from nexus.batching import shared_prefix_length
from nexus.tasks.arithmetic import SPLITS, inject_error, sample_problem

INSTRUCTION = "Solve each problem step by step, one operation per line."


def best_of_n_task(backbone, n: int, ratio: float, rng: random.Random) -> tuple[str, list[str]]:
    """A few-shot prompt about `ratio` times as long (in tokens) as its `n` candidate solutions."""
    cfg = SPLITS["id"]
    problem = sample_problem(rng, cfg)
    candidates = ["\n".join(problem.steps)] + ["\n".join(inject_error(problem, rng, cfg)[0]) for _ in range(n - 1)]
    target = ratio * sum(len(backbone.tokenizer(c)["input_ids"]) for c in candidates) / n
    shots = []
    while True:
        prompt = "\n\n".join([INSTRUCTION, *shots, f"Problem: {problem.prompt}\nSolution:"])
        if len(backbone.tokenizer(prompt)["input_ids"]) >= target:
            return prompt, candidates
        example = sample_problem(rng, cfg)
        shots.append(f"Problem: {example.prompt}\nSolution:\n" + "\n".join(example.steps))


def run(args) -> list[Row]:
    peak = args.peak or matmul_peak_gflops()
    backbone = load_backbone(args.backbone)
    flops = FlopModel.fit(backbone)
    rm = build_family("scalar", backbone, args.seed)
    rng = random.Random(args.seed)
    tasks = [best_of_n_task(backbone, args.n, args.prompt_ratio, rng) for _ in range(args.prompts)]
    ids = [backbone.token_ids([p] * args.n, cs) for p, cs in tasks]
    shared = [shared_prefix_length(seqs) for seqs in ids]
    plain_flops = sum(flops.sequences(map(len, seqs)) for seqs in ids)
    shared_flops = sum(flops.extend(s, s) + sum(flops.extend(len(q) - s, len(q)) for q in seqs)
                       for s, seqs in zip(shared, ids))
    out = {}

    def plain():
        out["plain"] = torch.cat([rm.score([p] * args.n, cs, share_prompts=False).rewards for p, cs in tasks])

    def packed():
        out["packed"] = torch.cat([rm.score_candidates(p, cs).rewards for p, cs in tasks])

    plain(), packed()  # warm-up, untimed
    slow, pack = best_seconds(plain, args.repeats), best_seconds(packed, args.repeats)
    pack_gap = (out["plain"] - out["packed"]).abs().max().item()
    suffix = sum(len(q) - s for s, seqs in zip(shared, ids) for q in seqs) / (args.n * len(ids))
    total = args.n * args.prompts
    prompt_tokens = sum(len(backbone.tokenizer(p)["input_ids"]) for p, _ in tasks) / len(tasks)
    answer_tokens = sum(len(backbone.tokenizer(c)["input_ids"]) for _, cs in tasks for c in cs) / total
    rows = [Row("best_of_n", f"prompt encoded {args.n}x (score, share_prompts=False)", slow, f"{total / slow:.1f} candidates/s",
                "baseline", achieved(plain_flops, slow, peak)),
            Row("best_of_n", "prompt once, packed rows (score_candidates; score's default)", pack,
                f"{total / pack:.1f} candidates/s", f"{slow / pack:.2f}x", achieved(shared_flops, pack, peak),
                f"target >= 1.5x; max |reward diff| {pack_gap:.1e}")]
    header = (f"best-of-{args.n}, {args.prompts} prompts of {prompt_tokens:.0f} tokens, candidates of "
              f"{answer_tokens:.0f} ({prompt_tokens / answer_tokens:.1f}x); shared token prefix "
              f"{sum(shared) / len(shared):.0f}"
              f" (prompt, template and the candidates' common start), {suffix:.0f} per candidate after it; "
              f"backbone {args.backbone}, {threads_note()}")
    return report(rows, header)


def parser() -> argparse.ArgumentParser:
    p = benchmark_parser(__doc__, repeats=3)
    p.add_argument("--n", type=int, default=16, help="candidates per prompt")
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--prompt-ratio", type=float, default=4.0, help="prompt tokens / candidate tokens")
    p.add_argument("--backbone", default="smollm2-135m")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv=None) -> list[Row]:
    return run(parser().parse_args(argv))


if __name__ == "__main__":
    main()

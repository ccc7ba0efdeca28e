"""Generative RM: the verdict read from one forward pass vs generated and parsed.

python -m benchmarks.generative_verdict [--n 32] [--backbone smollm2-135m] [--answer-tokens 8]
                                        [--rationale-tokens 128]

All paths score the same arithmetic outcome data through `score` with the same judge weights
(length-sorted batches, inference mode). The fast path reads logit[Yes] - logit[No] at the next
position of the verdict context, reading the token prefix a batch's contexts share (system
prompt, instructions) once (`share_prefix`, the default); also timed with each context read whole. Baselines: (1) generate up to `--answer-tokens` tokens greedily
from the same context (stopping at the end of the judge's turn) and parse the first word; (2) how
judges usually produce a verdict: a rationale first (`explain=True`, up to `--rationale-tokens`
greedy tokens), then the verdict generated and parsed. Times and ratios come from one run, with
how often the readings agree. FLOPs (LM head included) are counted by FlopCounterMode on an
untimed run over the first batch and scaled to `--n`, as generation lengths vary.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import Row, benchmark_parser, best_seconds, report, threads_note
from benchmarks.roofline import achieved, count_flops, matmul_peak_gflops
from nexus.backbones import load_backbone
from nexus.tasks.arithmetic import generate
from nexus.models.generative import GenerativeRewardModel


def run(args) -> list[Row]:
    peak = args.peak or matmul_peak_gflops()
    data = generate(args.n, seed=7)["outcome"][: args.n]
    prompts, responses = [ex.prompt for ex in data], [ex.response for ex in data]
    backbone = load_backbone(args.backbone, lm_head=True)
    whole = GenerativeRewardModel(backbone, batch_size=args.batch_size)
    whole.share_prefix = False
    judges = {  # the same weights, shared
        "one forward (logits), shared prefix once": GenerativeRewardModel(backbone, batch_size=args.batch_size),
        "one forward (logits), each context whole": whole,
        f"generate + parse (<= {args.answer_tokens} tokens)": GenerativeRewardModel(
            backbone, read="generate", answer_max_tokens=args.answer_tokens, batch_size=args.batch_size),
        f"rationale ({args.rationale_tokens} tokens) + generate + parse": GenerativeRewardModel(
            backbone, read="generate", explain=True, critique_max_tokens=args.rationale_tokens,
            answer_max_tokens=args.answer_tokens, batch_size=args.batch_size),
    }
    seconds, flops, rewards = {}, {}, {}
    first = slice(0, args.batch_size)
    for name, rm in judges.items():
        rm.eval()
        _, counted = count_flops(lambda: rm.score(prompts[first], responses[first]))  # also the warm-up
        flops[name] = counted * args.n / len(prompts[first])
        seconds[name] = best_seconds(lambda: rewards.__setitem__(name, rm.score(prompts, responses).rewards),
                                     args.repeats)
    fast_name, log_odds = next(iter(rewards.items()))
    rows = []
    for name, reward in rewards.items():
        s = seconds[name]
        if name == fast_name:
            ratio, note = "", ""
        elif judges[name].read == "logits":  # the same log-odds, each context read whole
            ratio = f"{s / seconds[fast_name]:.2f}x slower than the shared prefix"
            note = f"max |log-odds diff| {(reward - log_odds).abs().max().item():.1e}"
        else:
            readable = ~reward.isnan()
            agree = ((log_odds[readable] > 0).float() == reward[readable]).float().mean().item() if readable.any() \
                else float("nan")
            ratio = f"{s / seconds[fast_name]:.2f}x slower than one forward"
            note = f"{readable.float().mean().item():.0%} readable, agree with the log-odds sign on {agree:.0%}"
        rows.append(Row("generative", name, s, f"{args.n / s:.1f} verdicts/s", ratio,
                        achieved(flops[name], s, peak), note))
    return report(rows, f"{args.n} responses, judge {args.backbone} (verdict words {judges[fast_name].yes_no}), "
                        f"batch {args.batch_size}, {threads_note()}; target: one forward >= 10x generate + parse")


def parser() -> argparse.ArgumentParser:
    p = benchmark_parser(__doc__, repeats=3)
    p.add_argument("--n", type=int, default=32, help="(prompt, response) pairs")
    p.add_argument("--backbone", default="smollm2-135m")
    p.add_argument("--answer-tokens", type=int, default=8, help="most tokens generated for the verdict")
    p.add_argument("--rationale-tokens", type=int, default=128,
                   help="most tokens of the rationale baseline (default: the YAML's critique_max_tokens)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    return p


def main(argv=None) -> list[Row]:
    args = parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return run(args)


if __name__ == "__main__":
    main()

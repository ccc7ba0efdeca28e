"""Generative RM: the verdict read from one forward pass vs generated and parsed (issue 5).

python -m benchmarks.generative_verdict [--n 32] [--backbone smollm2-135m] [--answer-tokens 8]

Both paths score the same arithmetic outcome data through `score` with the same judge weights and
the same rendered contexts (length-sorted batches, inference mode). The fast path reads
logit[Yes] - logit[No] at the next position; the baseline generates up to `--answer-tokens` tokens
greedily (stopping at the end of the judge's turn) and parses the first word. Both times and their
ratio come from one run, with how often the two readings agree.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import best_seconds
from nexus.backbones import load_backbone
from nexus.data.arithmetic import generate
from nexus.models.generative import GenerativeRewardModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32, help="(prompt, response) pairs")
    parser.add_argument("--backbone", default="smollm2-135m")
    parser.add_argument("--answer-tokens", type=int, default=8, help="most tokens generated for the verdict")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = generate(args.n, seed=7)["outcome"][: args.n]
    prompts, responses = [ex.prompt for ex in data], [ex.response for ex in data]
    backbone = load_backbone(args.backbone, lm_logprobs=True)
    fast_rm = GenerativeRewardModel(backbone, batch_size=args.batch_size).eval()
    slow_rm = GenerativeRewardModel(backbone, read="generate", answer_max_tokens=args.answer_tokens,
                                    batch_size=args.batch_size).eval()  # the same weights, shared
    fast_rm.score(prompts[:1], responses[:1]), slow_rm.score(prompts[:1], responses[:1])  # warm-up, untimed
    outputs = {}
    fast = best_seconds(lambda: outputs.__setitem__("fast", fast_rm.score(prompts, responses).rewards), args.repeats)
    slow = best_seconds(lambda: outputs.__setitem__("slow", slow_rm.score(prompts, responses).rewards), args.repeats)
    log_odds, parsed = outputs["fast"], outputs["slow"]
    readable = ~parsed.isnan()
    same = (log_odds[readable] > 0).float() == parsed[readable]
    agree = same.float().mean().item() if readable.any() else float("nan")
    print(f"{args.n} responses, judge {args.backbone} (verdict words {fast_rm.yes_no}), "
          f"batch {args.batch_size}, {torch.get_num_threads()} threads")
    print(f"one forward (logits) : {fast:.3f} s ({args.n / fast:.1f} verdicts/s)")
    print(f"generate + parse     : {slow:.3f} s ({args.n / slow:.1f} verdicts/s), up to {args.answer_tokens} tokens, "
          f"{readable.float().mean().item():.0%} readable, agreeing with the log-odds sign on {agree:.0%}")
    print(f"ratio (generate / one forward): {slow / fast:.2f}x")


if __name__ == "__main__":
    main()

"""Critique-revision (Bai et al. 2022, Constitutional AI, sec. 3): preference pairs from a judge's critiques.

A generative judge critiques each response against a principle (drawn at random per round from a
small constitution, as in the paper, or all of them at once), a policy rewrites the response to
address the critique, and every revision is written as preferred to the original in the pairwise
JSONL format, so the other RM families can train on it.

python -m nexus.sampling.critique_revision --judge smollm2-135m --policy smollm2-135m --n 32 --out data/cai.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import warnings
from pathlib import Path
from typing import Sequence

import torch

from nexus.data.formats import PairwiseExample, read_outcome, write_jsonl
from nexus.sampling.policy import HFPolicy, Policy

DEFAULT_PRINCIPLES = (
    "Every calculation in the answer is arithmetically correct.",
    "The answer works one operation per line and ends with the final result.",
)


def revision_request(judge, prompt: str, response: str, critique: str) -> str:
    """The policy's prompt: the question, the draft, the critique and the instruction to rewrite."""
    return judge.templates["revision"].format(prompt=prompt, response=response, critique=critique)


def _draw_principles(principles: Sequence[str], n: int, rng: random.Random, sample: bool) -> list[list[str]]:
    if not principles:
        return [[] for _ in range(n)]
    return [[rng.choice(principles)] if sample else list(principles) for _ in range(n)]


@torch.inference_mode()
def critique_revise(judge, policy: Policy, prompts: Sequence[str], responses: Sequence[str],
                    principles: Sequence[str] | None = None, n_rounds: int = 1, sample_principle: bool = True,
                    temperature: float = 0.0, seed: int = 0) -> list[PairwiseExample]:
    """Critique and revise every response `n_rounds` times; the final revision is chosen over the original.

    Args:
        judge: a `GenerativeRewardModel` (its `critique` and its `revision` template are used).
        policy: rewrites a response given `revision_request`.
        principles: the constitution (default: the judge's principles; empty: a plain critique).
        sample_principle: one principle drawn per response and round (Bai et al.), else all at once.

    Returns:
        The pairs, with `extra` holding the critiques, principles and round count. A revision that is
        empty or identical to the original gives no preference; such pairs are left out with a warning.
    """
    if len(prompts) != len(responses) or n_rounds < 1:
        raise ValueError(f"{len(prompts)} prompts, {len(responses)} responses, n_rounds={n_rounds}: "
                         "expected equal lengths and n_rounds >= 1")
    principles = list(judge.principles if principles is None else principles)
    rng, judge = random.Random(seed), judge.eval()
    current, log = list(responses), [{"critiques": [], "principles": []} for _ in prompts]
    for r in range(n_rounds):
        drawn = _draw_principles(principles, len(prompts), rng, sample_principle)
        critiques = [c[0] for c in judge.critique(prompts, current, drawn)]
        requests = [revision_request(judge, p, x, c) for p, x, c in zip(prompts, current, critiques)]
        current = [s[0].strip() for s in policy.generate(requests, 1, temperature, seed + r)]
        for entry, c, d in zip(log, critiques, drawn):
            entry["critiques"].append(c)
            entry["principles"].append(d)
    pairs = [PairwiseExample(p, revised, original, extra={**entry, "rounds": n_rounds})
             for p, original, revised, entry in zip(prompts, responses, current, log)
             if revised and revised != original.strip()]
    if len(pairs) < len(prompts):
        warnings.warn(f"{len(prompts) - len(pairs)} of {len(prompts)} revisions were empty or identical to "
                      "the original and give no preference pair", stacklevel=2)
    return pairs


def load_judge(name_or_path: str, critique_max_tokens: int, principles: Sequence[str]):
    """A saved judge (a generative nexus checkpoint) or a fresh zero-shot judge on a backbone name or HF directory."""
    from nexus.backbones import load_backbone
    from nexus.models.generative import GenerativeRewardModel

    config = Path(name_or_path) / "config.json"
    if config.is_file() and json.loads(config.read_text()).get("model_type") == GenerativeRewardModel.model_type:
        import nexus

        return nexus.load(name_or_path)  # a saved judge; an HF model directory is a backbone
    return GenerativeRewardModel(load_backbone(name_or_path, lm_head=True), principles=list(principles),
                                 critique_max_tokens=critique_max_tokens)


def _inputs(args) -> tuple[list[str], list[str]]:
    if args.outcome_file:
        examples = read_outcome(args.outcome_file)[: args.n]
    else:
        from nexus.tasks import arithmetic

        examples = arithmetic.generate(args.n, args.seed, arithmetic.SPLITS[args.split])["outcome"][: args.n]
    return [ex.prompt for ex in examples], [ex.response for ex in examples]


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: critique and revise responses (arithmetic outcome data or an outcome JSONL), write pairs."""
    parser = argparse.ArgumentParser(prog="python -m nexus.sampling.critique_revision",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--judge", required=True, help="a generative checkpoint directory or a backbone name")
    parser.add_argument("--policy", required=True, help="the reviser: a local causal LM name or directory")
    parser.add_argument("--out", type=Path, required=True, help="pairwise JSONL to write")
    parser.add_argument("--n", type=int, default=32, help="responses to revise")
    parser.add_argument("--outcome-file", help="outcome JSONL of (prompt, response); default: arithmetic outcome data")
    parser.add_argument("--split", default="id", help="arithmetic split")
    parser.add_argument("--principle", action="append", help="a principle (repeat); default: DEFAULT_PRINCIPLES")
    parser.add_argument("--all-principles", action="store_true", help="critique against all principles at once")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=0.0, help="the policy's; 0: greedy")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    principles = args.principle or list(DEFAULT_PRINCIPLES)
    judge = load_judge(args.judge, args.max_new_tokens, principles)
    policy = HFPolicy(args.policy, max_new_tokens=args.max_new_tokens, batch_size=8)
    prompts, responses = _inputs(args)
    pairs = critique_revise(judge, policy, prompts, responses, principles, args.rounds,
                            not args.all_principles, args.temperature, args.seed)
    count = write_jsonl(args.out, pairs)
    print(f"{args.out}\t{count} pairs (revised preferred to original) from {len(prompts)} responses")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

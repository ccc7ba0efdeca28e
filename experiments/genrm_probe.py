"""Can the ladder's task LM be fine-tuned into a GenRM verifier? One training, one number:
`python -m experiments.genrm_probe [--variant verdict|check|confirm|marks|solve] [--levels level1 level2 level3]
[--eval-level level2] [--n-train 1600] [--lr 5e-4] [--epochs 2] [--seed 0]`.

The generative RM (`GenerativeRewardModel`, all layers trained, compact prompts: the task LM has
never seen instructions) is fine-tuned on outcome examples of `--levels` (RM partition, seen
wordings) as Zhang et al. 2024 train GenRM, in one of these forms:

- `verdict`: next-token prediction of Y/N right after the solution; the reward is the Y/N log-odds
  of one forward pass.
- `check` (GenRM-CoT): first a step-by-step check that recomputes each step and compares
  (`rationale="arithmetic"`), then the verdict; scoring generates the check greedily.
- `confirm`: trained as `check`, read in one forward pass as the log-odds of writing the check
  that confirms the response, then the verdict (`read="confirmation"`): nothing is generated.
- `marks`: a check that copies each step and marks it ok or no (`rationale="arithmetic_marks"`).
- `solve` (GenRM-CoT, solving first): the judge first writes its own solution of the prompt
  without seeing the response (`solve_first`, `rationale="arithmetic_solution"`), then reads the
  response and gives its verdict.

Prints the pairwise accuracy on 200 evaluation pairs of `--eval-level` (evaluation partition,
seen wordings) before and after training, the training time and the scoring time per verdict.
One seed, one size: a probe of what works, not a comparison (that needs seeds and intervals).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from transformers import set_seed

from nexus.backbones import load_backbone
from nexus.models.generative import GenerativeRewardModel
from nexus.tasks import arithmetic
from nexus.tasks.arithmetic.problems import LEVELS
from nexus.tasks.arithmetic.templates import SEEN_TEMPLATES
from nexus.training import RewardTrainer, RewardTrainingArguments

VARIANTS = {"verdict": {}, "check": {"rationale": "arithmetic", "explain": True},
            "confirm": {"rationale": "arithmetic", "read": "confirmation"},
            "marks": {"rationale": "arithmetic_marks", "explain": True},
            "solve": {"rationale": "arithmetic_solution", "explain": True, "solve_first": True}}


def task(level: str, partition: str):
    return dataclasses.replace(arithmetic.SPLITS[level], templates=SEEN_TEMPLATES, partition=partition)


def accuracy(rm: GenerativeRewardModel, pairs) -> tuple[float, float]:
    """(pairwise accuracy, ties counted half; seconds per verdict)."""
    rm.eval()
    start = time.perf_counter()
    chosen = rm.score([p.prompt for p in pairs], [p.chosen for p in pairs]).rewards
    rejected = rm.score([p.prompt for p in pairs], [p.rejected for p in pairs]).rewards
    seconds = (time.perf_counter() - start) / (2 * len(pairs))
    return float(((chosen > rejected).float() + 0.5 * (chosen == rejected).float()).mean()), seconds


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="verdict")
    parser.add_argument("--levels", nargs="+", default=list(LEVELS))
    parser.add_argument("--eval-level", default="level2")
    parser.add_argument("--n-train", type=int, default=1600, help="training problems (pairs); each gives a right "
                        "and a wrong solution as two outcome examples, as the outcome RM trains")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default="outputs/genrm_probe")
    args = parser.parse_args(argv)
    set_seed(args.seed)
    train = []
    for i, level in enumerate(args.levels):
        train += arithmetic.generate(args.n_train // len(args.levels), 100 + args.seed + 7919 * i,
                                     task(level, "rm"))["outcome"]
    pairs = arithmetic.generate(200, 5, task(args.eval_level, "eval"))["pairwise"]
    rm = GenerativeRewardModel(load_backbone("arith-lm-ladder", lm_head=True, lm_logprobs=False), prompt_dir="compact",
                               batch_size=32, critique_max_tokens=96, seed=args.seed, **VARIANTS[args.variant])
    before, _ = accuracy(rm, pairs)  # the task LM's Y/N log-odds untrained (compact prompts)
    training = RewardTrainingArguments(
        output_dir=args.output_dir, num_train_epochs=args.epochs, per_device_train_batch_size=32,
        learning_rate=args.lr, warmup_steps=20, lr_scheduler_type="cosine", logging_steps=25, save_strategy="no",
        eval_strategy="no", report_to=[], seed=args.seed)
    start = time.perf_counter()
    RewardTrainer(model=rm, args=training, train_dataset=train).train()
    train_s = time.perf_counter() - start
    after, per_verdict = accuracy(rm, pairs)
    if rm.explain:  # what the trained judge writes about the first wrong solutions
        for text in rm.score([p.prompt for p in pairs[:3]], [p.rejected for p in pairs[:3]]).explanations:
            print("check of a wrong solution:", repr(text))
    result = {"variant": args.variant, "levels": args.levels, "eval_level": args.eval_level,
              "n_pairs": args.n_train, "outcome_examples": len(train),
              "accuracy_before": before, "accuracy_after": after, "train_s": round(train_s, 1),
              "seconds_per_verdict": per_verdict}
    print(result)
    return result


if __name__ == "__main__":
    main()

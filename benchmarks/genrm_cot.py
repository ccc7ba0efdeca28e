"""GenRM-CoT's cost per verdict: the step check read in one forward pass vs generated, against the plain verdict.

python -m benchmarks.genrm_cot [--n 200] [--level level2] [--rationale-tokens 64] [--batch-size 32]
                               [--train-steps 60]

Three judges share the ladder's task LM (`arith-lm-ladder`, compact prompts, the `arithmetic`
step-check rationale) and score the same `--n` outcome responses of `--level`:

- the plain GenRM verdict: Yes/No log-odds right after the solution, one forward pass;
- GenRM-CoT read by confirmation (`read="confirmation"`): the check that confirms the response is
  read teacher-forced, then the verdict, in one forward pass over a context about twice as long;
- GenRM-CoT as it is usually run (`explain=True`): the check generated greedily (up to
  `--rationale-tokens` tokens, stopping at the end of the check), then the verdict read.

The baseline is the generated check. Speed does not depend on the weights, but how long a
generated check runs does: the shared judge is first trained `--train-steps` steps on the check
(lr 1e-3, batch 16), enough to learn its format, and the note gives the mean length generated.
"""

from __future__ import annotations

import argparse
import dataclasses

from benchmarks.common import Row, benchmark_parser, best_seconds, report, threads_note
from nexus.backbones import load_backbone
from nexus.models.generative import GenerativeRewardModel
from nexus.tasks import arithmetic
from nexus.tasks.arithmetic.templates import SEEN_TEMPLATES


def run(args) -> list[Row]:
    task = dataclasses.replace(arithmetic.SPLITS[args.level], templates=SEEN_TEMPLATES, partition="eval")
    data = arithmetic.generate(args.n, 7, task)["outcome"][: args.n]
    prompts, responses = [ex.prompt for ex in data], [ex.response for ex in data]
    backbone = load_backbone("arith-lm-ladder", lm_head=True, lm_logprobs=False)
    common = {"prompt_dir": "compact", "rationale": "arithmetic", "batch_size": args.batch_size}
    if args.train_steps:  # teach the format, so the generated checks run as long as a trained judge's
        from nexus.training import RewardTrainer, RewardTrainingArguments

        train = arithmetic.generate(8 * args.train_steps, 11, dataclasses.replace(task, partition="rm"))["outcome"]
        training = RewardTrainingArguments(
            output_dir=args.output_dir, max_steps=args.train_steps, per_device_train_batch_size=16, learning_rate=1e-3,
            save_strategy="no", eval_strategy="no", report_to=[], disable_tqdm=True)
        RewardTrainer(model=GenerativeRewardModel(backbone, **common), train_dataset=train, args=training).train()
    judges = {
        "check generated, then verdict": GenerativeRewardModel(
            backbone, explain=True, critique_max_tokens=args.rationale_tokens, **common),
        "check read by confirmation (one forward)": GenerativeRewardModel(backbone, read="confirmation", **common),
        "plain verdict (one forward)": GenerativeRewardModel(backbone, **common),
    }
    seconds, outputs = {}, {}
    for name, rm in judges.items():
        rm.eval()
        rm.score(prompts[: args.batch_size], responses[: args.batch_size])  # warm-up
        seconds[name] = best_seconds(lambda: outputs.__setitem__(name, rm.score(prompts, responses)), args.repeats)
    baseline = next(iter(seconds.values()))
    tokenizer = backbone.tokenizer
    written = outputs["check generated, then verdict"].explanations
    mean_tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in written) / len(written)
    rows = []
    for i, (name, s) in enumerate(seconds.items()):
        ratio = "" if i == 0 else f"{baseline / s:.2f}x faster than generating the check"
        note = f"mean check generated: {mean_tokens:.0f} tokens" if i == 0 else ""
        rows.append(Row("genrm_cot", name, s, f"{args.n / s:.1f} verdicts/s ({1000 * s / args.n:.1f} ms each)",
                        ratio, "", note))
    return report(rows, f"{args.n} {args.level} responses, judge arith-lm-ladder, batch {args.batch_size}, "
                        f"{threads_note()}")


def parser() -> argparse.ArgumentParser:
    p = benchmark_parser(__doc__, repeats=3)
    p.add_argument("--n", type=int, default=200, help="responses scored")
    p.add_argument("--level", default="level2", choices=list(arithmetic.SPLITS))
    p.add_argument("--rationale-tokens", type=int, default=64, help="most tokens of a generated check")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--train-steps", type=int, default=60,
                   help="steps of check training first (0: the task LM as shipped, whose checks stop early)")
    p.add_argument("--output-dir", default="outputs/genrm_cot_bench", help="the trainer's scratch folder")
    return p


def main(argv=None) -> list[Row]:
    return run(parser().parse_args(argv))


if __name__ == "__main__":
    main()

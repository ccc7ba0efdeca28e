"""nexus's trainer against TRL's `RewardTrainer`: same backbone, data, steps and learning rate.

python -m benchmarks.vs_trl [--backbone smollm2-135m] [--pairs 64] [--steps 8] [--batch 8] [--eval 64]

Needs TRL (`pip install -e .[peers]`). Two chat-style (conversational) preference sets from the
arithmetic task: `long-prompt`, whose prompts (a system message and worked examples) are several
times longer than the responses, and `short-prompt`, the bare problem. Both trainers fine-tune the
same pretrained model as a sequence classifier with one linear score head (nexus:
`ScalarRewardModel(head_hidden=0)`; TRL: `AutoModelForSequenceClassification`, num_labels=1),
Bradley-Terry loss, AdamW at the same learning rate, no dropout, fp32, the same pairs in the same
order. Reported: seconds per step (steps after the first), peak resident memory above the start,
and held-out pairwise accuracy, both models scored the same way (TRL's saved model imported with
`nexus.load`). nexus reads each pair's prompt once (`Backbone.pack`); TRL reads it twice.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import PeakRSS, Row, benchmark_parser, report, threads_note
from nexus.tasks.arithmetic import SPLITS, generate, sample_problem

SYSTEM = "You check arithmetic. Solve each problem one operation per line, like the worked examples."


def preference_rows(n: int, seed: int, long_prompt: bool) -> list[dict]:
    """TRL's conversational preference rows (explicit prompt): right vs one-error solutions."""
    rng = random.Random(seed)
    rows = []
    for pair in generate(n, seed)["pairwise"][:n]:
        content = f"Problem: {pair.prompt}"
        if long_prompt:
            shots = [sample_problem(rng, SPLITS["id"]) for _ in range(4)]
            worked = "\n\n".join(f"Problem: {p.prompt}\nSolution:\n" + "\n".join(p.steps) for p in shots)
            content = f"{worked}\n\n{content}"
        prompt = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}]
        rows.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": pair.chosen}],
                     "rejected": [{"role": "assistant", "content": pair.rejected}]})
    return rows


class StepTimes:
    """A TrainerCallback recording the wall time at the end of every step."""

    def __init__(self):
        self.ends = []

    def __getattr__(self, name):  # every other callback event: nothing to do
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def on_step_begin(self, args, state, control, **kwargs):
        if not self.ends:
            self.ends.append(time.perf_counter())

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())

    def per_step(self) -> float:
        gaps = [b - a for a, b in zip(self.ends[1:], self.ends[2:])]  # without the first step (warm-up)
        return sum(gaps) / len(gaps)


def held_out_accuracy(rm, rows: list[dict]) -> float:
    from nexus.data.formats import PairwiseExample
    from nexus.evaluation import evaluate_pairwise

    return evaluate_pairwise(rm, [PairwiseExample(r["prompt"], r["chosen"], r["rejected"]) for r in rows])["accuracy"]


def train_nexus(args, directory: Path, train_rows, eval_rows) -> tuple[float, float, float]:
    import datasets

    from nexus.backbones import load_backbone
    from nexus.models.scalar import ScalarRewardModel
    from nexus.training import RewardTrainer, RewardTrainingArguments

    torch.manual_seed(args.seed)
    rm = ScalarRewardModel(load_backbone(args.backbone, max_length=args.max_length), head_hidden=0, dropout=0.0)
    config = RewardTrainingArguments(output_dir=str(directory / "nexus"), max_steps=args.steps, learning_rate=args.lr,
                                     per_device_train_batch_size=args.batch, save_strategy="no", logging_steps=1,
                                     disable_tqdm=True, seed=args.seed, data_seed=args.seed)
    times = StepTimes()
    trainer = RewardTrainer(model=rm, args=config, train_dataset=datasets.Dataset.from_list(train_rows),
                            callbacks=[times])
    with PeakRSS() as memory:
        trainer.train()
    return times.per_step(), memory.mib, held_out_accuracy(rm.eval(), eval_rows)


def train_trl(args, directory: Path, train_rows, eval_rows) -> tuple[float, float, float]:
    import datasets
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    import nexus
    from nexus.backbones import resolve_backbone_dir

    source = resolve_backbone_dir(args.backbone)
    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    config = RewardConfig(output_dir=str(directory / "trl"), max_steps=args.steps, learning_rate=args.lr,
                          per_device_train_batch_size=args.batch, save_strategy="no", logging_steps=1,
                          disable_tqdm=True, seed=args.seed, data_seed=args.seed, report_to="none",
                          max_length=args.max_length, disable_dropout=True, bf16=False, fp16=False,
                          gradient_checkpointing=False)  # TRL turns it on by default; nexus does not checkpoint
    times = StepTimes()
    trainer = RewardTrainer(model=model, args=config, train_dataset=datasets.Dataset.from_list(train_rows),
                            processing_class=tokenizer, callbacks=[times])
    with PeakRSS() as memory:
        trainer.train()
    trainer.save_model(str(directory / "trl_model"))
    tokenizer.save_pretrained(str(directory / "trl_model"))
    return times.per_step(), memory.mib, held_out_accuracy(nexus.load(directory / "trl_model"), eval_rows)


def run(args) -> list[Row]:
    rows = []
    for name, long_prompt in (("long-prompt", True), ("short-prompt", False)):
        train_rows = preference_rows(args.pairs, args.seed, long_prompt)
        eval_rows = preference_rows(args.eval, args.seed + 1000, long_prompt)
        with tempfile.TemporaryDirectory() as tmp:
            trl_s, trl_mib, trl_acc = train_trl(args, Path(tmp), train_rows, eval_rows)
            nexus_s, nexus_mib, nexus_acc = train_nexus(args, Path(tmp), train_rows, eval_rows)
        rows += [Row("vs_trl", f"{name}: TRL RewardTrainer", trl_s, f"{1 / trl_s:.3f} steps/s", "baseline",
                     note=f"peak +{trl_mib:.0f} MiB; held-out accuracy {trl_acc:.3f}"),
                 Row("vs_trl", f"{name}: nexus RewardTrainer", nexus_s, f"{1 / nexus_s:.3f} steps/s",
                     f"{trl_s / nexus_s:.2f}x TRL", note=f"peak +{nexus_mib:.0f} MiB; held-out accuracy {nexus_acc:.3f}")]
    header = (f"TRL vs nexus reward training: {args.backbone}, {args.steps} steps of {args.batch} pairs, lr {args.lr}, "
              f"{args.eval} held-out pairs, {threads_note()}")
    return report(rows, header)


def parser():
    p = benchmark_parser(__doc__, repeats=None)
    p.add_argument("--backbone", default="smollm2-135m")
    p.add_argument("--pairs", type=int, default=64)
    p.add_argument("--eval", type=int, default=64)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv=None) -> None:
    run(parser().parse_args(argv))


if __name__ == "__main__":
    main()

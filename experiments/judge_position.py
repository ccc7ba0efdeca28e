"""Position bias of the pairwise judge, measured, then removed two ways:
`python -m experiments.judge_position [--backbone smollm2-135m] [--seeds 0 1 2] [--n-train 160]
[--n-pairs 100] [--out docs/data/judge_position]`.

The judge (`GenerativeRewardModel.compare_orders`: the pairwise question, answer A then B, the
next token read as P(A) restricted to A and B) is asked about held-out arithmetic pairs (`id`
split: a correct solution and one with an injected error) in both orders, and about pairs of two
identical answers. Per judge:

- `consistency`: the fraction of pairs whose verdict survives the swap (Zheng et al. 2023's
  position consistency; GPT-4 scores 65% on MT-Bench);
- `accuracy_one_order`: how often one ordering's verdict names the better answer (both orderings
  pooled);
- `accuracy_swap_averaged`, `consistency_swap_averaged`: the same after averaging P(a better) over
  the two orders (`compare`); the averaged verdict survives the swap by construction;
- `p_first_identical`: P(A) when both answers are the same text (0.5 for a judge without position
  bias); `p_first_identical_swap_averaged` is 0.5 by construction.

Judges: zero-shot; LoRA-fine-tuned (last two layers) on `--n-train` pairs shown in one random
order each (2 epochs); and on the same pairs shown in both orders (1 epoch, so both see the same
number of rows). Every number is a mean over `--seeds` (training data, order draws and LoRA
initialisation vary) with a 95% t-interval; the zero-shot judge has no seed. Writes
`metrics.json` (per seed) and `summary.md` under `--out`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from transformers import set_seed

from experiments.aggregate import t_interval
from nexus import metrics
from nexus.backbones import load_backbone
from nexus.data.judge import VerdictCollator
from nexus.models.generative import GenerativeRewardModel
from nexus.reporting import markdown_table
from nexus.tasks import arithmetic
from nexus.training import RewardTrainer, RewardTrainingArguments

LAST_TWO = r".*layers\.(28|29)\..*(q_proj|k_proj|v_proj|o_proj|up_proj|down_proj|gate_proj)"
METRICS = ("consistency", "accuracy_one_order", "accuracy_swap_averaged", "p_first_identical",
           "consistency_swap_averaged", "p_first_identical_swap_averaged")


def position_report(judge: GenerativeRewardModel, pairs) -> dict[str, float]:
    """The metrics of the module docstring on `pairs` (PairwiseExample)."""
    prompts = [p.prompt for p in pairs]
    chosen, rejected = [p.chosen for p in pairs], [p.rejected for p in pairs]
    a_first, a_second = judge.compare_orders(prompts, chosen, rejected)
    same_first, same_second = judge.compare_orders(prompts + prompts, chosen + rejected, chosen + rejected)
    averaged = 0.5 * (a_first + a_second)
    return {
        "consistency": metrics.position_consistency(a_first, a_second),
        "accuracy_one_order": float(torch.cat([a_first > 0.5, a_second > 0.5]).float().mean()),
        "accuracy_swap_averaged": float((averaged > 0.5).float().mean()),
        "p_first_identical": float(same_first.mean()),
        # the swap-averaged P(a better) is the same whichever answer is shown first
        "consistency_swap_averaged": metrics.position_consistency(averaged, averaged),
        # P(the first-shown copy better), averaged over showing it first and second
        "p_first_identical_swap_averaged": float((0.5 * (same_first + same_second)).mean()),
    }


def fine_tune(backbone: str, orders: str, train, seed: int, out: Path,
              lora_modules: str = LAST_TWO) -> tuple[GenerativeRewardModel, float]:
    set_seed(seed)
    judge = GenerativeRewardModel(load_backbone(backbone, lm_head=True, seed=seed, lora={
        "r": 8, "alpha": 16, "dropout": 0.0, "target_modules": lora_modules}), batch_size=16)
    args = RewardTrainingArguments(
        output_dir=str(out), num_train_epochs=1 if orders == "both" else 2, per_device_train_batch_size=8,
        learning_rate=5e-4, warmup_steps=5, logging_steps=10, save_strategy="no", eval_strategy="no",
        report_to=[], seed=seed)
    start = time.perf_counter()
    RewardTrainer(model=judge.train(), args=args, train_dataset=train,
                  data_collator=VerdictCollator(judge, pair_orders=orders, seed=seed)).train()
    return judge.eval(), time.perf_counter() - start


def summarise(rows: list[dict]) -> list[dict]:
    table = []
    for judge in dict.fromkeys(r["judge"] for r in rows):
        mine = [r for r in rows if r["judge"] == judge]
        line = {"judge": judge, "seeds": len(mine)}
        for name in METRICS:
            mean, low, high = t_interval([r[name] for r in mine])
            line[name] = f"{mean:.3f}" + (f" [{low:.3f}, {high:.3f}]" if len(mine) > 1 else "")
        table.append(line)
    return table


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="smollm2-135m")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-train", type=int, default=160, help="training pairs per seed")
    parser.add_argument("--n-pairs", type=int, default=100, help="held-out pairs")
    parser.add_argument("--lora-modules", default=LAST_TWO, help="LoRA's target_modules (default: every "
                        "linear layer of SmolLM2's last two layers, so backward stops there)")
    parser.add_argument("--out", default="outputs/judge_position")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    held = arithmetic.generate(args.n_pairs, 3000, arithmetic.SPLITS["id"])["pairwise"][: args.n_pairs]
    judge = GenerativeRewardModel(load_backbone(args.backbone, lm_head=True), batch_size=16).eval()
    rows = [{"judge": "zero-shot", "seed": None, "train_s": 0.0, **position_report(judge, held)}]
    print(rows[-1], flush=True)
    for seed in args.seeds:
        train = arithmetic.generate(args.n_train, 100 + seed, arithmetic.SPLITS["id"])["pairwise"][: args.n_train]
        for orders in ("random", "both"):
            with tempfile.TemporaryDirectory() as scratch:  # the trainer's output folder; nothing is saved
                judge, seconds = fine_tune(args.backbone, orders, train, seed, Path(scratch), args.lora_modules)
            name = "fine-tuned, one random order" if orders == "random" else "fine-tuned, both orders"
            rows.append({"judge": name, "seed": seed, "train_s": seconds, **position_report(judge, held)})
            print(rows[-1], flush=True)
    (out / "metrics.json").write_text(json.dumps(rows, indent=1))
    table = markdown_table(summarise(rows))
    (out / "summary.md").write_text(f"# Position bias of the pairwise judge ({args.backbone})\n\n{table}\n")
    print(table, flush=True)
    return rows


if __name__ == "__main__":
    main()

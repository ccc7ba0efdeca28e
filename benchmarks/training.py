"""Training throughput: chosen and rejected in one forward vs two (issue 8).

python -m benchmarks.training [--pairs 32] [--steps 4] [--backbone arith-lm]

One training step = forward, loss, backward, AdamW step, for the scalar and the ensemble RM of
`experiments/conf/model/` on the backbone as `experiments/conf/backbone/arith_lm.yaml` loads it
(`lm_logprobs`). Fast path: the family's own collator packs chosen and rejected into one '(2 b) n'
batch (`PairwiseCollator`, what `RewardTrainer` runs); baseline: chosen and rejected collated and
run as two forwards. Same loss (Bradley-Terry; the ensemble's own `pair_loss`). FLOPs: 3 x the
forward's model FLOPs (forward + backward), from the token lengths (`roofline`).
"""

from __future__ import annotations

import argparse

import torch
from einops import rearrange

from benchmarks.common import Row, benchmark_parser, best_seconds, report, threads_note
from benchmarks.roofline import FlopModel, achieved, matmul_peak_gflops
from benchmarks.scoring import build_family
from nexus.backbones import load_backbone
from nexus.data.arithmetic import SPLITS, generate
from nexus.losses import bradley_terry_loss


def pair_loss(rm, chosen, rejected, batch) -> torch.Tensor:
    """The trainer's loss for 'b' rewards or 'b k 2' member outputs (nexus.training.trainer)."""
    if chosen.ndim == 1:
        return bradley_terry_loss(chosen, rejected)
    return rm.pair_loss(chosen, rejected, batch.get("member_weights"), 0.0)


def one_forward_step(rm, optimizer, batch) -> None:
    outputs = rm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    chosen, rejected = rearrange(outputs, "(two b) ... -> two b ...", two=2)
    step(optimizer, pair_loss(rm, chosen, rejected, batch))


def two_forward_step(rm, optimizer, batches) -> None:
    chosen_batch, rejected_batch, extra = batches
    chosen = rm(**chosen_batch)
    rejected = rm(**rejected_batch)
    step(optimizer, pair_loss(rm, chosen, rejected, extra))


def step(optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def run(args) -> list[Row]:
    peak = args.peak or matmul_peak_gflops()
    backbone = load_backbone(args.backbone, lm_logprobs=args.lm_logprobs)
    flops = FlopModel.fit(backbone)
    pairs = generate(args.pairs, seed=args.seed, cfg=SPLITS["id"])["pairwise"][: args.pairs]
    prompts = [p.prompt for p in pairs]
    rows = []
    for family in ("scalar", "ensemble"):
        rm = build_family(family, backbone, args.seed).train()
        collator = rm.data_collator(seed=args.seed)
        packed = collator(pairs)
        separate = tuple(backbone.collate(backbone.token_ids(prompts, [getattr(p, side) for p in pairs]))
                         for side in ("chosen", "rejected")) + (packed,)
        lengths = [len(ids) for ids in backbone.token_ids(prompts + prompts, [p.chosen for p in pairs]
                                                           + [p.rejected for p in pairs])]
        train_flops = 3 * flops.sequences(lengths)
        optimizer = torch.optim.AdamW([p for p in rm.parameters() if p.requires_grad], lr=1e-5)
        one_forward_step(rm, optimizer, packed), two_forward_step(rm, optimizer, separate)  # warm-up
        one = best_seconds(lambda: one_forward_step(rm, optimizer, packed), args.steps)
        two = best_seconds(lambda: two_forward_step(rm, optimizer, separate), args.steps)
        rows += [Row("training", f"{family}: chosen, rejected in 2 forwards", two, f"{args.pairs / two:.1f} pairs/s",
                     "baseline", achieved(train_flops, two, peak)),
                 Row("training", f"{family}: one packed forward", one, f"{args.pairs / one:.1f} pairs/s",
                     f"{two / one:.2f}x", achieved(train_flops, one, peak))]
    return report(rows, f"training steps of {args.pairs} pairs (best of {args.steps}), backbone {args.backbone}"
                        f"{' with lm_logprobs' if args.lm_logprobs else ''}, {threads_note()}")


def parser() -> argparse.ArgumentParser:
    p = benchmark_parser(__doc__, repeats=None)
    p.add_argument("--pairs", type=int, default=32, help="pairs per step (trainer default batch size)")
    p.add_argument("--steps", type=int, default=4, help="timed steps per case (the best one counts)")
    p.add_argument("--backbone", default="arith-lm")
    p.add_argument("--no-lm-logprobs", dest="lm_logprobs", action="store_false")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv=None) -> list[Row]:
    return run(parser().parse_args(argv))


if __name__ == "__main__":
    main()

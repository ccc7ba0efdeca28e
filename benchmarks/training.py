"""Training throughput: chosen and rejected in one forward vs two.

python -m benchmarks.training [--pairs 32] [--steps 4] [--backbone arith-lm]

One training step = forward, loss, backward, AdamW step, for the scalar and the ensemble RM of
`experiments/conf/model/` on the backbone as `experiments/conf/backbone/arith_lm.yaml` loads it
(`lm_logprobs`). Baseline: chosen and rejected collated and run as two forwards. Fast paths:
chosen and rejected in one '(2 b) n' batch (`PairwiseCollator`, as TRL does), and, for the scalar
RM, what its own collator gives `RewardTrainer`: one row per pair that reads the prompt once
(`share_prompts`, `Backbone.pack`). Same loss (Bradley-Terry; the ensemble's own `pair_loss`).
FLOPs: 3 x the forward's model FLOPs (forward + backward), from the token lengths (`roofline`),
the shared prompt counted once on the packed path.
"""

from __future__ import annotations

import argparse

import torch
from einops import rearrange

from benchmarks.common import Row, benchmark_parser, best_seconds, report, threads_note
from benchmarks.roofline import FlopModel, achieved, matmul_peak_gflops
from benchmarks.scoring import build_family
from nexus.backbones import load_backbone
from nexus.batching import shared_prefix_length
from nexus.tasks.arithmetic import SPLITS, generate
from nexus.data.collators import PairwiseCollator
from nexus.base import MODEL_INPUTS
from nexus.losses import bradley_terry_loss


def pair_loss(rm, chosen, rejected, batch) -> torch.Tensor:
    """The trainer's loss for 'b' rewards or 'b k 2' member outputs (nexus.training.trainer)."""
    if chosen.ndim == 1:
        return bradley_terry_loss(chosen, rejected)
    return rm.pair_loss(chosen, rejected, batch.get("member_weights"), 0.0)


def one_forward_step(rm, optimizer, batch) -> None:
    outputs = rm(**{k: batch[k] for k in MODEL_INPUTS if k in batch})
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
        together = PairwiseCollator(backbone, getattr(rm, "bootstrap_members", None), seed=args.seed)(pairs)
        separate = tuple(backbone.collate(backbone.token_ids(prompts, [getattr(p, side) for p in pairs]))
                         for side in ("chosen", "rejected")) + (together,)
        chosen_ids = backbone.token_ids(prompts, [p.chosen for p in pairs])
        rejected_ids = backbone.token_ids(prompts, [p.rejected for p in pairs])
        train_flops = 3 * flops.sequences([len(ids) for ids in chosen_ids + rejected_ids])
        optimizer = torch.optim.AdamW([p for p in rm.parameters() if p.requires_grad], lr=1e-5)
        one_forward_step(rm, optimizer, together), two_forward_step(rm, optimizer, separate)  # warm-up
        one = best_seconds(lambda: one_forward_step(rm, optimizer, together), args.steps)
        two = best_seconds(lambda: two_forward_step(rm, optimizer, separate), args.steps)
        rows += [Row("training", f"{family}: chosen, rejected in 2 forwards", two, f"{args.pairs / two:.1f} pairs/s",
                     "baseline", achieved(train_flops, two, peak)),
                 Row("training", f"{family}: one (2 b) forward", one, f"{args.pairs / one:.1f} pairs/s",
                     f"{two / one:.2f}x", achieved(train_flops, one, peak))]
        if rm.packs_prompts:  # the family's own collator: one row per pair, the prompt read once
            shared = rm.data_collator(seed=args.seed)(pairs)
            one_forward_step(rm, optimizer, shared)  # warm-up
            packed = best_seconds(lambda: one_forward_step(rm, optimizer, shared), args.steps)
            work = 0.0
            for c, r in zip(chosen_ids, rejected_ids):
                s = shared_prefix_length([c, r])
                work += 3 * (flops.extend(s, s) + flops.extend(len(c) - s, len(c)) + flops.extend(len(r) - s, len(r)))
            rows.append(Row("training", f"{family}: one row per pair, prompt once (default)", packed,
                            f"{args.pairs / packed:.1f} pairs/s", f"{two / packed:.2f}x", achieved(work, packed, peak),
                            f"{sum(1 for _ in pairs)} rows of {shared['input_ids'].shape[1]} tokens"))
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

"""Scoring throughput of every RM family against the naive per-example loop.

python -m benchmarks.scoring [--n 512] [--backbone smollm2-135m] [--max-tokens 512] [--repeats 1]

Inputs: `--n` responses (chosen and rejected of `--n / 2` arithmetic pairs) of mixed lengths
(`common.LENGTH_MIX`). Baseline: what many reward-model tutorials do, an
`AutoModelForSequenceClassification` (num_labels=1, the same backbone weights) called once per
example in a Python loop under `torch.no_grad()`. Then every family of `experiments/conf/model/`
built on the same backbone with its YAML's arguments, through `score` (length-sorted batches of
the YAML's `batch_size`, inference mode, padding to each batch's longest only), and again with a
token budget per batch (`--max-tokens`) where the family has a backbone. The scalar RM
four ways: its default, which packs the inputs that share a prompt (a pair's chosen and
rejected) into one row that reads the prompt once, in batches of `--max-tokens`; each input
alone in the YAML's fixed batches; each input alone in `--max-tokens` batches; and dynamically
int8-quantised (`nexus.quantize`), whose accuracy cost is measured on the same pairs with a head
fitted to them first (a linear probe on the frozen features, so that accuracy means something).
Memory: peak resident memory above the level before the call (`common.PeakRSS`). FLOPs: the
backbone's, from token lengths (`roofline`), counting what each path runs: the packed path's
shared prompts once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from transformers import AutoModelForSequenceClassification

from benchmarks.common import PeakRSS, Row, benchmark_parser, best_seconds, mixed_pairs, pair_inputs, threads_note
from benchmarks.roofline import FlopModel, achieved, matmul_peak_gflops
from nexus.backbones import load_backbone
from nexus.batching import prompt_groups
from nexus.losses import bradley_terry_loss
from nexus.models.process import split_steps
from nexus.quantize import quantize_int8

MODEL_DIR = Path(__file__).resolve().parents[1] / "experiments" / "conf" / "model"


def build_family(name: str, backbone, seed: int = 0, overrides: list[str] = ()):
    """The RM of `experiments/conf/model/<name>.yaml` on `backbone` (interpolations: seed only), with
    `key=value` overrides of its arguments."""
    model = OmegaConf.merge(OmegaConf.load(MODEL_DIR / f"{name}.yaml"), OmegaConf.from_dotlist(list(overrides)))
    cfg = OmegaConf.create({"seed": seed, "model": model})
    torch.manual_seed(seed)
    return instantiate(cfg.model, backbone=backbone).eval()


def naive_classifier(backbone):
    """The tutorial baseline: AutoModelForSequenceClassification carrying the backbone's body weights."""
    config = backbone.hf_config.__class__.from_dict(backbone.hf_config.to_dict())
    config.num_labels, config.pad_token_id = 1, backbone.tokenizer.pad_token_id
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config)
    body = backbone.model.get_base_model() if hasattr(backbone.model, "get_base_model") else backbone.model
    model.base_model.load_state_dict(body.base_model.state_dict())
    return model.eval()


def naive_loop(model, backbone, prompts, responses) -> torch.Tensor:
    """One forward per example, tokenised in the loop, as tutorials write it."""
    rewards = []
    with torch.no_grad():
        for prompt, response in zip(prompts, responses):
            ids = torch.tensor(backbone.token_ids([prompt], [response]))[:, -backbone.max_length:]
            rewards.append(model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, 0])
    return torch.stack(rewards)


def input_lengths(rm, prompts, responses) -> list[int] | None:
    """Tokens each input costs the family's backbone, after truncation (None: no backbone, e.g. rules)."""
    backbone = getattr(rm, "backbone", None)
    if backbone is None:
        return None
    if hasattr(rm, "verdict_ids"):  # the judge reads its own rendered context
        ids = [rm.verdict_ids(p, r)[0] for p, r in zip(prompts, responses)]
    elif hasattr(rm, "step_token_ids"):  # the process RM adds a separator per step
        ids = rm.step_token_ids(prompts, [split_steps(r, rm.step_delimiter) for r in responses])
    else:
        ids = backbone.token_ids(prompts, responses)
    return [min(len(seq), backbone.max_length) for seq in ids]


def fit_probe(rm, prompts, responses, steps: int = 300) -> None:
    """Fit `rm.head` on frozen features of (chosen, rejected) at (2i, 2i + 1) with the BT loss."""
    with torch.inference_mode():
        features = torch.cat([rm.backbone(**rm.backbone.encode(prompts[i:i + 16], responses[i:i + 16]))
                              for i in range(0, len(prompts), 16)])
    features = features.clone()
    optimizer = torch.optim.AdamW(rm.head.parameters(), lr=3e-3)
    rm.head.train()
    for _ in range(steps):
        rewards = rm.head(features)
        loss = bradley_terry_loss(rewards[0::2], rewards[1::2])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    rm.eval()


def run(args) -> list[Row]:
    peak = args.peak or matmul_peak_gflops()
    backbone = load_backbone(args.backbone)
    flops = FlopModel.fit(backbone)
    prompts, responses = pair_inputs(mixed_pairs(args.n // 2, seed=args.seed))
    probe_prompts, probe_responses = pair_inputs(mixed_pairs(args.probe_pairs, seed=args.seed + 100))
    n = len(prompts)
    rows = []

    def measure(case, fn, lengths, baseline=None, note="", work=None):
        """Time `fn`; FLOPs are `work` where given (the packed path), else each input read alone."""
        with PeakRSS() as memory:
            seconds = best_seconds(fn, args.repeats)
        ratio = f"{baseline / seconds:.2f}x naive loop" if baseline else ""
        work = work or (flops.sequences(lengths) if lengths else None)
        roof = achieved(work, seconds, peak) if work else "no FLOPs"
        rows.append(Row("scoring", case, seconds, f"{n / seconds:.1f} responses/s", ratio, roof,
                        f"{memory.mib:.0f} MiB peak RSS" + (f"; {note}" if note else "")))
        print("  " + rows[-1].line(), flush=True)
        return rows[-1]

    print(f"scoring {n} mixed-length responses, backbone {args.backbone} "
          f"({sum(p.numel() for p in backbone.parameters()) / 1e6:.1f}M parameters), {threads_note()}, "
          f"fp32 matmul peak {peak:.1f} GFLOP/s")
    lengths = input_lengths(build_family("scalar", backbone), prompts, responses)
    print(f"  tokens per response: mean {sum(lengths) / n:.0f}, min {min(lengths)}, max {max(lengths)}")
    classifier = naive_classifier(backbone)
    naive = measure("naive loop (HF classifier, 1/call)", lambda: naive_loop(classifier, backbone, prompts, responses),
                    lengths).seconds
    scalar_rows(args, backbone, prompts, responses, probe_prompts, probe_responses, lengths, naive, measure, flops)
    for name in sorted(p.stem for p in MODEL_DIR.glob("*.yaml")):
        if name == "scalar":
            continue
        rm = build_family(name, backbone, args.seed)
        measure(name, lambda rm=rm: rm.score(prompts, responses), input_lengths(rm, prompts, responses), naive,
                f"batch_size {rm.batch_size} (YAML)")
        if getattr(rm, "backbone", None) is not None:
            measure(f"{name}, max_tokens {args.max_tokens}", lambda rm=rm: rm.score(prompts, responses,
                    max_tokens=args.max_tokens), input_lengths(rm, prompts, responses), naive)
    return rows


def packed_flops(flops: FlopModel, backbone, prompts, responses, max_tokens: int) -> tuple[float, str]:
    """FLOPs `score` runs with shared prompts (each group's prefix once, then each suffix against
    it; inputs alone read whole) and a note on how much of the input that shares."""
    ids = backbone.token_ids(prompts, responses)
    groups, alone = prompt_groups(prompts, ids, backbone.max_length, max_tokens)
    work = sum(flops.extend(len(g.prefix), len(g.prefix)) + sum(flops.extend(len(s), len(g.prefix) + len(s))
                                                                for s in g.suffixes) for g in groups)
    work += flops.sequences([min(len(ids[i]), backbone.max_length) for i in alone])
    read = sum(g.tokens for g in groups) + sum(len(ids[i]) for i in alone)
    return work, f"{len(groups)} packed rows, {len(alone)} inputs alone, {read / sum(map(len, ids)):.0%} of the tokens"


def scalar_rows(args, backbone, prompts, responses, probe_prompts, probe_responses, lengths, naive, measure,
                flops) -> None:
    """The scalar RM: shared prompts packed (the default), then each input alone in fixed batches and
    in token-budget batches, and int8; int8's accuracy cost on the scored pairs."""
    rm = build_family("scalar", backbone, args.seed)
    fit_probe(rm, probe_prompts, probe_responses)
    out = {}
    work, shared = packed_flops(flops, backbone, prompts, responses, args.max_tokens)
    packed = measure(f"scalar (default: prompts shared, max_tokens {args.max_tokens})",
                     lambda: out.__setitem__("fp32", rm.score(prompts, responses, max_tokens=args.max_tokens).rewards),
                     lengths, naive, shared, work=work).seconds
    alone = rm.score(prompts, responses, share_prompts=False).rewards
    gap = (alone - out["fp32"]).abs().max().item()
    print(f"    prompts shared vs each input alone: max |reward diff| {gap:.1e}")
    measure("scalar, share_prompts=False", lambda: rm.score(prompts, responses, share_prompts=False), lengths,
            naive, f"batch_size {rm.batch_size} (YAML)")
    budget = measure(f"scalar, share_prompts=False, max_tokens {args.max_tokens}",
                     lambda: rm.score(prompts, responses, max_tokens=args.max_tokens, share_prompts=False),
                     lengths, naive)
    budget.note += f"; prompts shared: {budget.seconds / packed:.2f}x faster"
    for keep in ([], args.int8_keep):
        int8 = quantize_int8(rm, keep=keep)
        case = "scalar, int8 dynamic" + (f" ({', '.join(keep)} fp32)" if keep else "")
        row = measure(case, lambda int8=int8: out.__setitem__("int8", int8.score(
            prompts, responses, max_tokens=args.max_tokens).rewards), lengths, naive, "fp32-equivalent FLOPs", work=work)
        row.note += f"; {packed / row.seconds:.2f}x fp32; " + int8_cost(out["fp32"], out["int8"])
        print(f"    {case}: {row.note}")


def int8_cost(fp32: torch.Tensor, int8: torch.Tensor) -> str:
    """Accuracy on (chosen, rejected) at (2i, 2i + 1), sign agreement, correlation and the largest gap."""
    accuracy = {name: (r[0::2] > r[1::2]).float().mean().item() for name, r in (("fp32", fp32), ("int8", int8))}
    agree = ((fp32[0::2] > fp32[1::2]) == (int8[0::2] > int8[1::2])).float().mean().item()
    r = torch.corrcoef(torch.stack([fp32, int8]))[0, 1].item()
    gap = (fp32 - int8).abs().max().item()
    return (f"pairwise accuracy {accuracy['int8']:.3f} (fp32 {accuracy['fp32']:.3f}), preferences agree {agree:.1%}, "
            f"reward correlation {r:.3f}, max |reward diff| {gap:.3g} = {gap / fp32.std().item():.2f} reward std")


def parser() -> argparse.ArgumentParser:
    p = benchmark_parser(__doc__, repeats=1)
    p.add_argument("--n", type=int, default=512, help="responses (pairs x 2)")
    p.add_argument("--backbone", default="smollm2-135m")
    p.add_argument("--max-tokens", type=int, default=512, help="token budget per batch of the scalar rows")
    p.add_argument("--int8-keep", nargs="*", default=["down_proj", "mlp.c_proj"],
                   help="module-name parts left fp32 in the second int8 row (MLP output projections)")
    p.add_argument("--probe-pairs", type=int, default=64, help="pairs the int8 check's head is fitted on")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv=None) -> list[Row]:
    return run(parser().parse_args(argv))


if __name__ == "__main__":
    main()

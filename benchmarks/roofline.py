"""Roofline: this machine's fp32 matmul peak, a backbone's forward FLOPs, and achieved fractions.

python -m benchmarks.roofline [--backbone arith-lm] [--lengths 32 64 128]

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` (exact for matmuls; attention
added below, which the counter misses on CPU). A backbone's body costs `per_token * n + per_pair
* n * n` for one sequence of n tokens (linear layers, then attention's query-key pairs), so two
counted lengths fit `FlopModel` exactly and every benchmark prices its inputs from their token
lengths without counting again. These are the model's FLOPs (padding excluded, as MFU counts
them); heads and the LM head are left out (under 0.1% for a scalar head; stated where large).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import best_seconds

aten = torch.ops.aten


def _attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """'b h q d' x 'b h k d' x 'b h k e': 2 b h q k d for Q K^T plus 2 b h q k e for the weighted sum
    (causal masking not subtracted, as FlopCounterMode counts it on GPU; key heads may be fewer: GQA)."""
    b, h, q, d = query_shape
    return 2 * b * h * q * key_shape[-2] * (d + value_shape[-1])


# The CPU paths of scaled_dot_product_attention that FlopCounterMode does not price (torch 2.x).
ATTENTION_OPS = {aten.scaled_dot_product_attention: _attention_flops,
                 aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops}


def count_flops(fn: Callable[[], object]) -> tuple[object, int]:
    """Run `fn()` under FlopCounterMode; return its result and the FLOPs it executed."""
    with FlopCounterMode(display=False, custom_mapping=ATTENTION_OPS) as counter:
        result = fn()
    return result, counter.get_total_flops()


# Linear layers as transformers run them ('rows x in -> out', F.linear with a row-major weight):
# SmolLM2's MLP and attention shapes and a wide one. On this AVX2 CPU they run 5-15% faster than a
# square `torch.mm` of the same work, so a square-only probe is not the ceiling (it read 121-143%).
LINEAR_SHAPES = ((2048, 576, 1536), (2048, 1536, 576), (1024, 1024, 4096), (1024, 4096, 1024))


def matmul_peak_gflops(sizes: Sequence[int] = (1024, 2048, 4096), shapes=LINEAR_SHAPES, repeats: int = 5) -> float:
    """The best fp32 GFLOP/s at the current thread count over square `torch.mm` of each size
    (2 n^3 FLOPs) and `F.linear` of each (rows, in, out) shape (2 rows in out FLOPs)."""
    cases = [(torch.mm, torch.randn(n, n), torch.randn(n, n), 2 * n ** 3) for n in sizes]
    cases += [(F.linear, torch.randn(m, k), torch.randn(n, k), 2 * m * k * n) for m, k, n in shapes]
    best = 0.0
    with torch.inference_mode():
        for op, a, b, flops in cases:
            op(a, b)  # warm-up: first-call allocation and thread start
            best = max(best, flops / best_seconds(lambda: op(a, b), repeats) / 1e9)
    return best


@dataclass(frozen=True)
class FlopModel:
    """A backbone body's forward FLOPs: `per_token` per token read, `per_pair` per (query, key) pair."""

    per_token: float
    per_pair: float

    @classmethod
    def fit(cls, backbone, lengths: tuple[int, int] = (16, 32)) -> "FlopModel":
        """Count the body's forward at two lengths (batch 1) and solve for the two coefficients."""
        body = _body(backbone.model)
        counts = []
        for n in lengths:
            ids = torch.randint(0, backbone.tokenizer.vocab_size, (1, n), device=backbone.device)
            with torch.inference_mode():
                counts.append(count_flops(lambda: body(input_ids=ids, attention_mask=torch.ones_like(ids)))[1])
        a = np.array([[n, n * n] for n in lengths], dtype=float)
        per_token, per_pair = np.linalg.solve(a, np.array(counts, dtype=float))
        return cls(float(per_token), float(per_pair))

    def extend(self, new: int, total: int) -> float:
        """FLOPs of reading `new` tokens after `total - new` cached ones (one row)."""
        return new * self.per_token + new * total * self.per_pair

    def sequences(self, lengths: Sequence[int]) -> float:
        """FLOPs of reading each sequence on its own, from scratch (padding excluded)."""
        return float(sum(self.extend(n, n) for n in lengths))


def _body(model):
    """The transformer without its LM head (peft wrappers unwrapped)."""
    model = model.get_base_model() if hasattr(model, "get_base_model") else model
    return model.base_model


def achieved(flops: float, seconds: float, peak_gflops: float) -> str:
    """'x GFLOP/s, y% of peak' for `flops` done in `seconds`."""
    gflops = flops / seconds / 1e9
    return f"{gflops:.1f} GFLOP/s, {gflops / peak_gflops:.0%} of peak"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="arith-lm")
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 64, 128])
    args = parser.parse_args()
    from nexus.backbones import load_backbone

    peak = matmul_peak_gflops()
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s ({torch.get_num_threads()} threads)")
    backbone = load_backbone(args.backbone)
    model = FlopModel.fit(backbone)
    print(f"{args.backbone}: {model.per_token / 1e6:.2f} MFLOP per token, {model.per_pair:.0f} FLOP per "
          "attention pair")
    body = _body(backbone.model)
    for n in args.lengths:
        ids = torch.randint(0, backbone.tokenizer.vocab_size, (8, n))
        with torch.inference_mode():
            seconds = best_seconds(lambda: body(input_ids=ids, attention_mask=torch.ones_like(ids)), 3)
        print(f"forward 8 x {n} tokens: {model.sequences([n] * 8) / 1e9:.2f} GFLOP in {seconds:.3f} s, "
              f"{achieved(model.sequences([n] * 8), seconds, peak)}")


if __name__ == "__main__":
    main()

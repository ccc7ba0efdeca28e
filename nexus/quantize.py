"""Dynamic int8 quantisation of a reward model for CPU inference.

Every `nn.Linear` gets int8 weights (per-tensor scales) and quantises its input on the fly, as
`torch.ao.quantization.quantize_dynamic` does (Jacob et al. 2018; PyTorch's dynamic quantisation):
matmuls run in int8 with int32 accumulation, everything else stays float32. GPT-2 writes its
projections as `Conv1D` (a transposed Linear), so those are turned into `nn.Linear` first, or the
GPT-2 family (`arith-lm`, `tiny-gpt2`) would not be quantised at all.

Dynamic quantisation scales each input per tensor, so a few outlier activation channels (LLM.int8(),
Dettmers et al. 2022) cost most of the precision: in SmolLM2 the MLP output projections (`down_proj`,
whose input is the MLP's wide activation) do, and `keep` leaves such layers in float32.

The result is for scoring only: keep and save the float32 model (the packed int8 weights are not
safetensors). `benchmarks/scoring.py` measures its speed and its accuracy cost.
"""

from __future__ import annotations

import copy
import warnings
from typing import Sequence

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from nexus.base import RewardModel


def conv1d_to_linear(module: nn.Module) -> nn.Module:
    """Replace every GPT-2 `Conv1D` (y = x W + b, W 'in out') in `module` by the equal `nn.Linear`, in place."""
    for name, child in list(module.named_children()):
        if isinstance(child, Conv1D):
            n_in, n_out = child.weight.shape
            linear = nn.Linear(n_in, n_out, device=child.weight.device, dtype=child.weight.dtype)
            with torch.no_grad():
                linear.weight.copy_(child.weight.t())
                linear.bias.copy_(child.bias)
            setattr(module, name, linear)
        else:
            conv1d_to_linear(child)
    return module


def quantize_int8(rm: RewardModel, keep: Sequence[str] = ()) -> RewardModel:
    """A copy of `rm` whose `nn.Linear` layers (GPT-2 `Conv1D` included) are dynamically int8-quantised.

    Args:
        rm: a reward model on the CPU (the int8 kernels are fbgemm/x86 or qnnpack); left untouched.
        keep: substrings of module names to leave in float32, e.g. `("down_proj", "mlp.c_proj")`.

    Returns:
        The quantised copy; it scores like `rm` up to the quantisation error.

    Raises:
        ValueError: `rm` is not on the CPU.
    """
    if rm.device.type != "cpu":
        raise ValueError(f"dynamic int8 quantisation runs on the CPU; the model is on {rm.device}")
    model = conv1d_to_linear(copy.deepcopy(rm)).eval()
    names = {name for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and not any(k in name for k in keep)}
    spec = dict.fromkeys(names, torch.ao.quantization.default_dynamic_qconfig)
    with warnings.catch_warnings():  # torch announces these kernels' move to torchao on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        return torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)

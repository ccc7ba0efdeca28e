"""LoRA adapters on a backbone (Hu et al. 2021), through `peft`."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class LoraSpec:
    """LoRA adapter settings passed to `peft.LoraConfig` (Hu et al. 2021)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"


def apply_lora(model: nn.Module, spec: LoraSpec) -> nn.Module:
    """Wrap `model` with LoRA adapters; only the adapters stay trainable."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
        target_modules=spec.target_modules, bias="none",
        # GPT-2 stores its projections as Conv1D (transposed weights).
        fan_in_fan_out=getattr(model.config, "model_type", "") == "gpt2",
    )
    return get_peft_model(model, config)

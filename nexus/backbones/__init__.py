"""Backbones: load a transformer body by name, path or tiny config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

from nexus.backbones.backbone import Backbone
from nexus.backbones.hub import local_or_hub, torch_dtype
from nexus.backbones.lora import LoraSpec
from nexus.backbones.names import resolve_name
from nexus.backbones.packaged import PACKAGED
from nexus.backbones.tiny import TINY, build_tiny

# The names `load_backbone` knows without a path (the task LMs come from `nexus.backbones.names`).
BUILTIN = (*TINY, "arith-lm", "arith-lm-ladder", *PACKAGED)


def resolve_backbone_dir(name_or_path: str, revision: str | None = None) -> Path | None:
    """The local HF directory behind a name (None for the tiny random configs): a built-in name, a
    local directory, or a hub id resolved through the Hugging Face cache (`nexus.backbones.hub`)."""
    if name_or_path in TINY:
        return None
    provided = resolve_name(name_or_path)  # a name a task provides (the arithmetic task's LMs)
    if provided is not None:
        return provided
    if name_or_path in PACKAGED:
        from nexus.backbones.packaged import packaged_model_dir

        return packaged_model_dir(name_or_path)
    try:
        path = local_or_hub(name_or_path, revision)
    except ValueError as err:  # shaped like a hub id, but not found there
        raise ValueError(f"unknown backbone {name_or_path!r}: not a built-in name ({', '.join(BUILTIN)}), "
                         f"not a local directory, and as a hub id: {err}") from None
    if path is None:
        raise ValueError(
            f"unknown backbone {name_or_path!r}: not a built-in name ({', '.join(BUILTIN)}), "
            "not a local directory and not a hub id (owner/name)"
        )
    if not (path / "config.json").is_file():
        raise ValueError(f"backbone directory {path} has no config.json (expected a Hugging Face model directory)")
    return path


def load_backbone(
    name_or_path: str, *, seed: int = 0, pooling: str | None = None, max_length: int | None = None,
    padding_side: str = "right", lora: LoraSpec | dict | None = None, trust_remote_code: bool = False,
    lm_head: bool = False, lm_logprobs: bool = False, revision: str | None = None, dtype: str | None = None,
    logprob_scope: str = "response", prompt_format: str = "chat",
) -> Backbone:
    """Load a backbone by built-in name, local HF directory or hub id.

    Args:
        name_or_path: one of `BUILTIN`, a local Hugging Face model directory, or a hub id
            ("owner/name") resolved as transformers does (the HF cache, `HF_HUB_OFFLINE`).
        revision: a hub id's branch, tag or commit (default "main").
        dtype: "fp32", "bf16" or "fp16" (long names too) for the body's weights; None keeps the
            checkpoint's. Pooled features leave the backbone in float32, so heads stay float32.
        seed: init seed of the tiny random configs.
        pooling: "last" or "mean"; default by architecture (decoder: last, encoder: mean).
        lora: optional LoRA adapters (`LoraSpec` or its fields as a dict).
        trust_remote_code: off unless the user asks; only for local directories. Off, a directory
            whose model type transformers does not know is refused, and its code never runs.
        lm_head: load a decoder with its LM head (`AutoModelForCausalLM`), as a judge reads it.
        lm_logprobs: append the mean and min token log-likelihood under the LM head to the pooled
            features (see `Backbone`); loads the head whatever `lm_head` says.
        logprob_scope: "response": those features score the response's tokens given the prompt;
            "input": every token after the first, prompt included.
        prompt_format: "chat": a string prompt and response are read as a conversation through the
            tokenizer's chat template (plain text where it has none); "raw": a string prompt is
            already the model's text and the response is concatenated to it (`Backbone.token_ids`).
    """
    lm_head = lm_head or lm_logprobs
    if isinstance(lora, Mapping):  # a dict, or the DictConfig Hydra passes: plain values for peft
        lora = LoraSpec(**{k: (list(v) if isinstance(v, Sequence) and not isinstance(v, str) else v)
                           for k, v in lora.items()})
    directory = resolve_backbone_dir(name_or_path, revision)
    dtype = torch_dtype(dtype)
    if directory is None:
        model, tokenizer = build_tiny(name_or_path, seed=seed, with_lm_head=lm_head)
        model = model.to(dtype) if dtype is not None else model
    else:
        from nexus.checkpoint import checked_hf_config

        auto_class = AutoModelForCausalLM if lm_head else AutoModel
        # Refuses unknown model types (unless trust_remote_code) and configs that disagree with the
        # size of the weight files, before anything is allocated.
        config = checked_hf_config(directory, auto_class, trust_remote_code)
        kwargs = dict(local_files_only=True, trust_remote_code=trust_remote_code)
        model = auto_class.from_pretrained(directory, config=config, **dtype_kwargs(dtype), **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(directory, **kwargs)
    return Backbone(model, tokenizer, source=name_or_path, pooling=pooling, max_length=max_length,
                    padding_side=padding_side, lora=lora, lm_logprobs=lm_logprobs, logprob_scope=logprob_scope,
                    prompt_format=prompt_format)


def dtype_kwargs(dtype) -> dict:
    """`from_pretrained`'s keyword for the weights' dtype (`dtype` from transformers 4.56, before it
    `torch_dtype`); {} for None (the checkpoint's own)."""
    if dtype is None:
        return {}
    import transformers
    from packaging.version import Version

    return {"dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype": dtype}


__all__ = ["BUILTIN", "Backbone", "LoraSpec", "load_backbone", "resolve_backbone_dir"]

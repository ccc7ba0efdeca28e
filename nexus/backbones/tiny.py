"""Random-weight 2-layer configs for tests and fast runs."""

from __future__ import annotations

import torch
from transformers import AutoModel, AutoModelForCausalLM, BertConfig, GPT2Config, LlamaConfig, PretrainedConfig, PreTrainedModel

from nexus.backbones.tokenizer import build_byte_tokenizer

MAX_POSITIONS = 512


def _tiny_config(name: str, vocab_size: int, pad_id: int, eos_id: int) -> PretrainedConfig:
    common = dict(vocab_size=vocab_size, pad_token_id=pad_id, eos_token_id=eos_id, bos_token_id=eos_id)
    if name == "tiny-gpt2":
        return GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=MAX_POSITIONS, **common)
    if name == "tiny-llama":
        return LlamaConfig(
            num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=MAX_POSITIONS, **common,
        )
    if name == "tiny-bert":
        return BertConfig(
            num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
            max_position_embeddings=MAX_POSITIONS, **common,
        )
    raise ValueError(f"unknown tiny backbone {name!r}; known: {', '.join(TINY)}")


TINY = ("tiny-gpt2", "tiny-llama", "tiny-bert")


def build_tiny(name: str, seed: int = 0, with_lm_head: bool = False) -> tuple[PreTrainedModel, object]:
    """A seeded random-weight tiny model (optionally with its LM head) and the byte tokenizer."""
    tokenizer = build_byte_tokenizer(MAX_POSITIONS)
    config = _tiny_config(name, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = (AutoModelForCausalLM if with_lm_head else AutoModel).from_config(config, trust_remote_code=False)
    return model, tokenizer

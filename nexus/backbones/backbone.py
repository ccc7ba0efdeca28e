"""`Backbone`: a transformer body, its tokenizer and a pooling rule (texts -> 'b d').

Legend: b batch, n tokens, d hidden.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

from nexus.backbones.hub import dtype_name, torch_dtype
from nexus.backbones.logprobs import (find_marker, grouped_logprob_summary, marker_position, running_logprob_stats,
                                      token_logprob_stats)
from nexus.backbones.lora import LoraSpec, apply_lora
from nexus.backbones.text import PROMPT_FORMATS, TextRule
from nexus.backbones.pooling import POOLERS
from nexus.validation import check_positive_int

# Model types that read text bidirectionally and are pooled by the masked mean.
ENCODER_TYPES = {
    "bert", "roberta", "xlm-roberta", "distilbert", "deberta", "deberta-v2",
    "electra", "albert", "mpnet", "modernbert",
}
# max_length when none is given: the model's position limit, but at most this many tokens.
DEFAULT_MAX_LENGTH = 2048
# What the log-likelihood features read: "response" (its tokens given the prompt) or "input" (every
# token after the first, prompt included, as checkpoints saved before the choice existed do).
LOGPROB_SCOPES = ("response", "input")


def is_encoder_config(config) -> bool:
    """True for bidirectional encoders (mean pooling), False for decoders (last token)."""
    architectures = config.architectures or []
    if any(a.endswith(("CausalLM", "LMHeadModel")) for a in architectures):
        return False
    return config.model_type in ENCODER_TYPES


class Backbone(TextRule, nn.Module):
    """A transformer body that turns (prompt, response) pairs into pooled features 'b d'.

    The text each input becomes is `token_ids`'s rule (the ecosystem's conventions: the model
    card's `apply_chat_template`, TRL's standard data, the tokenizer's pair encoding). Decoders
    are pooled at the last non-pad token; encoders are mean-pooled (or read through their pooler),
    with the token types their tokenizer gives the pair.
    Over-long inputs are cut from the left, so the end of the response is kept, and
    a warning reports how many were cut. A decoder loaded with its LM head
    (`has_lm_head`: `AutoModelForCausalLM`) can serve a judge's next-token readout; with
    `lm_logprobs` the pooled features also carry the mean and min token log-likelihood
    under that head, so an RM can use what its SFT initialisation already knows. Those read the
    response's tokens given the prompt (`logprob_scope="response"`): the prompt's own likelihood
    says how familiar its wording is, not whether the response is right.
    """

    def __init__(self, model, tokenizer, *, source: str, pooling: str | None = None,
                 max_length: int | None = None, padding_side: str = "right",
                 lora: LoraSpec | None = None, lm_logprobs: bool = False, append_eos: bool | None = None,
                 logprob_scope: str = "response", prompt_format: str = "chat"):
        super().__init__()
        if prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format={prompt_format!r}: expected one of {PROMPT_FORMATS}")
        self.prompt_format = prompt_format
        self._closers: tuple[int, frozenset[int]] | None = None  # (vocab size, special token ids)
        self._blank: dict[int, bool] = {}  # token id -> decodes to whitespace only
        self.is_encoder = is_encoder_config(model.config)
        self.has_lm_head = not self.is_encoder and model.get_output_embeddings() is not None
        if lm_logprobs and not self.has_lm_head:
            raise ValueError("lm_logprobs=True needs a decoder loaded with its LM head (AutoModelForCausalLM)")
        self.lm_logprobs = lm_logprobs
        if logprob_scope not in LOGPROB_SCOPES:
            raise ValueError(f"logprob_scope={logprob_scope!r}: expected one of {LOGPROB_SCOPES}")
        self.logprob_scope = logprob_scope
        self._marker: tuple[list[int], bool] | None = None
        self.pooling = pooling or ("mean" if self.is_encoder else "last")
        if self.pooling not in POOLERS and not (self.pooling == "pooler" and getattr(model, "pooler", None)):
            raise ValueError(f"pooling={self.pooling!r}: expected one of {sorted(POOLERS)}, or 'pooler' for a "
                             "model with its own pooler (BERT: tanh(W h_[CLS]), what its sequence classifier reads)")
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side={padding_side!r}: expected 'left' or 'right'")
        self.source, self.padding_side, self.lora = source, padding_side, lora
        self.hf_config = model.config
        # `forward` runs the body (the model without an LM head), so ask the body.
        self._takes_positions = "position_ids" in inspect.signature(model.base_model.forward).parameters
        self.model = apply_lora(model, lora) if lora else model
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:  # e.g. Llama-family: pad with eos, pooling reads the mask
            tokenizer.pad_token = tokenizer.eos_token
        # Decoders whose text does not end in a special token get an eos appended, except where the pad
        # token is the eos: transformers' classifiers (and so TRL's RMs) pool at the last token that is
        # not pad and never read a trailing eos, so neither does a backbone (None: decide by the pad).
        self.append_eos = tokenizer.pad_token_id != tokenizer.eos_token_id if append_eos is None else append_eos
        # The most positions the model embeds, where its config says (None: unknown).
        self.position_limit: int | None = (getattr(model.config, "max_position_embeddings", None)
                                           or getattr(model.config, "n_positions", None))
        self._vocab_stats: tuple[int, int, bool] | None = None  # (vocab size, longest entry, per-character)
        self.max_length = max_length

    @property
    def max_length(self) -> int:
        """Most tokens per input; longer inputs keep their last `max_length` tokens (see `collate`)."""
        return self._max_length

    @max_length.setter
    def max_length(self, value: int | None) -> None:
        """Set `max_length`: an integer >= 2 (the last token and one before it), at most the model's
        position limit where its config gives one; None picks min(position limit, 2048)."""
        default = min(self.position_limit or 512, DEFAULT_MAX_LENGTH)
        try:
            value = check_positive_int("max_length", value, 2, self.position_limit, allow_none=True)
        except ValueError as err:
            limit = (f"{self.source} embeds {self.position_limit} positions" if self.position_limit
                     else f"{self.source} gives no position limit")
            raise ValueError(f"{err} ({limit}; None picks {default})") from None
        self._max_length = default if value is None else value

    @property
    def hidden_size(self) -> int:
        return int(self.hf_config.hidden_size)

    @property
    def feature_size(self) -> int:
        """Width of `forward`'s output: hidden size, plus 2 with `lm_logprobs`."""
        return self.hidden_size + (2 if self.lm_logprobs else 0)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The body's weight dtype (features leave `forward` as float32 whatever it is)."""
        return next(self.model.parameters()).dtype

    def scored_from(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor | None:
        """'b' the first position the log-likelihood features score (just after the prompt), or None
        to score every token after the first (`logprob_scope="input"`)."""
        if self.logprob_scope == "input":
            return None
        marker, last = self.response_marker()
        return find_marker(input_ids, attention_mask, marker, last)

    def collate(self, ids: list[list[int]], padding_side: str | None = None) -> dict[str, Tensor]:
        """Truncate (from the left, with a warning) and pad to the batch's longest, on `padding_side`
        (default: the backbone's; a generating judge pads left so the read positions line up)."""
        too_long = [len(seq) for seq in ids if len(seq) > self.max_length]
        if too_long:
            warnings.warn(
                f"{len(too_long)} of {len(ids)} inputs exceed max_length={self.max_length} tokens "
                f"(longest {max(too_long)}); their first tokens were cut to keep the response end",
                stacklevel=3,
            )
            ids = [seq[-self.max_length:] for seq in ids]
        width = max(len(seq) for seq in ids)
        input_ids = torch.full((len(ids), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, seq in enumerate(ids):
            span = slice(width - len(seq), width) if (padding_side or self.padding_side) == "left" else slice(0, len(seq))
            input_ids[row, span] = torch.tensor(seq, dtype=torch.long)
            mask[row, span] = 1
        return {"input_ids": input_ids, "attention_mask": mask}

    def encode(self, prompts: Sequence[str], responses: Sequence[str]) -> dict[str, Tensor]:
        """Tokenize, truncate, pad and move to this backbone's device."""
        batch = self.collate(self.token_ids(prompts, responses))
        return {k: v.to(self.device) for k, v in batch.items()}

    def _body(self) -> nn.Module:
        """The transformer without its LM head (the model itself for AutoModel). LoRA layers are
        injected in place, so the body of the unwrapped model still runs them."""
        lm = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return lm.base_model

    def position_kwargs(self, attention_mask: Tensor) -> dict[str, Tensor]:
        """`position_ids` that count attended tokens (so left padding changes nothing), for models
        that take them; {} for the rest."""
        if not self._takes_positions:
            return {}
        return {"position_ids": (attention_mask.long().cumsum(-1) - 1).clamp(min=0)}

    def hidden_states(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor | None]:
        """'b n', 'b n' -> ('b n h' last hidden states, 'b n v' LM logits with `lm_logprobs`, else None)."""
        kwargs = self.position_kwargs(attention_mask)
        types = self.token_type_ids(input_ids, attention_mask)
        if types is not None:
            kwargs["token_type_ids"] = types
        lm = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        hidden = self._body()(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        return hidden, (lm.get_output_embeddings()(hidden) if self.lm_logprobs else None)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """'b n', 'b n' -> 'b d' pooled features."""
        hidden, logits = self.hidden_states(input_ids, attention_mask)
        if self.pooling == "pooler":
            pooled = self._body().pooler(hidden).float()
        else:
            pooled = POOLERS[self.pooling](hidden, attention_mask).float()  # heads read float32 whatever the body's dtype
        if logits is None:
            return pooled
        stats = token_logprob_stats(logits, input_ids, attention_mask, self.scored_from(input_ids, attention_mask))
        return torch.cat([pooled, stats], dim=-1)

    def position_features(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """'b n', 'b n' -> 'b n d' features at every position (`feature_size` wide): the hidden
        state, plus the running mean and min token log-likelihood with `lm_logprobs`. Decoders
        only: there a position's state has read exactly the tokens up to it."""
        if self.is_encoder:
            raise ValueError(f"{self.source}: per-position features need a decoder; encoders read both ways")
        hidden, logits = self.hidden_states(input_ids, attention_mask)
        if logits is None:
            return hidden.float()
        stats = running_logprob_stats(logits, input_ids, attention_mask, self.scored_from(input_ids, attention_mask))
        return torch.cat([hidden.float(), stats], dim=-1)

    @property
    def can_pack(self) -> bool:
        """Whether `packed_features` applies: a decoder pooled at its last token, taking position
        ids and a custom 4D mask (sdpa or eager attention)."""
        return (not self.is_encoder and self.pooling == "last" and self._takes_positions
                and getattr(self.hf_config, "_attn_implementation", None) in ("sdpa", "eager"))

    def pack(self, groups: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]]) -> dict[str, Tensor]:
        """Rows for `forward_packed`, one per (prefix, suffixes) group, each prefix to be read once
        (a pair's chosen and rejected, best-of-N candidates). CPU tensors:

        - `input_ids` 'b n': `prefix suffix_1 ... suffix_k`, right-padded;
        - `attention_mask` 'b 1 n n' bool: suffix j sees the prefix and its own earlier tokens only
          (block-causal); a padded position sees itself only (no fully masked, NaN, rows);
        - `position_ids` 'b n': each suffix's positions continue the prefix's;
        - `pool_index` 'c 2': (row, column) of each suffix's last token, groups and suffixes in order;
        - `logprob_index` 'r 4': (row, column, token, input) for every token after the first of each
          prefix + suffix, read at the column before it (with `lm_logprobs`; else empty).

        So each suffix's state is the one that reading `prefix + suffix` alone gives, up to float
        error. Every suffix needs >= 1 token and prefix + suffix <= max_length.
        """
        if not self.can_pack:
            raise ValueError(f"{self.source}: packed prefixes need a decoder with last-token pooling, "
                             "position ids and sdpa or eager attention")
        rows, segments, positions, ends, scored = [], [], [], [], []
        marker, last = self.response_marker() if self.logprob_scope == "response" else ([], False)
        for g, (prefix, suffixes) in enumerate(groups):
            p = len(prefix)
            if p < 1 or not suffixes or min(map(len, suffixes)) < 1 or p + max(map(len, suffixes)) > self.max_length:
                raise ValueError(f"pack: group {g} needs a prefix and >= 1 suffix of >= 1 token each, and prefix "
                                 f"+ suffix <= max_length={self.max_length}")
            tokens, segment, position = list(prefix), [0] * p, list(range(p))
            for j, suffix in enumerate(suffixes, start=1):
                if self.lm_logprobs:  # only the log-likelihood features read these
                    reads = [*range(p - 1), p - 1, *range(len(tokens), len(tokens) + len(suffix) - 1)]
                    first = marker_position([*prefix, *suffix], marker, last) if marker else 1
                    scored += [(g, col, tok, len(ends)) for k, (col, tok) in enumerate(zip(reads, [*prefix[1:], *suffix]))
                               if k + 1 >= first]
                tokens += suffix
                segment += [j] * len(suffix)
                position += range(p, p + len(suffix))
                ends.append((g, len(tokens) - 1))
            rows.append(tokens)
            segments.append(segment)
            positions.append(position)
        width = max(map(len, rows))

        def pad(values, fill):
            return torch.tensor([v + [fill] * (width - len(v)) for v in values], dtype=torch.long)

        seg = pad(segments, -1)
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        # query q sees key k if k <= q, k is real, and k is in the prefix or in q's own suffix
        visible = causal & (seg[:, None, :] >= 0) & ((seg[:, None, :] == 0) | (seg[:, None, :] == seg[:, :, None]))
        visible |= torch.eye(width, dtype=torch.bool)
        return {"input_ids": pad(rows, self.tokenizer.pad_token_id), "attention_mask": visible[:, None],
                "position_ids": pad(positions, 0), "pool_index": torch.tensor(ends, dtype=torch.long),
                "logprob_index": torch.tensor(scored, dtype=torch.long).reshape(-1, 4)}

    def packed_hidden(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor) -> Tensor:
        """`pack`'s rows -> 'b n h' last hidden states of the body (no LM head)."""
        mask = attention_mask
        if self.hf_config._attn_implementation == "eager":  # eager attention adds the mask to its scores
            mask = torch.zeros(mask.shape, dtype=self.model.dtype, device=mask.device).masked_fill(
                ~mask, torch.finfo(self.model.dtype).min)
        lm = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return lm.base_model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids).last_hidden_state

    def forward_packed(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor, pool_index: Tensor,
                       logprob_index: Tensor) -> Tensor:
        """`pack`'s rows -> 'c d' `forward`'s features of every packed input, in `pool_index` order."""
        lm = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        hidden = self.packed_hidden(input_ids, attention_mask, position_ids)
        pooled = hidden[pool_index[:, 0], pool_index[:, 1]].float()
        if not self.lm_logprobs:
            return pooled
        row, col, token, index = logprob_index.T
        logits = lm.get_output_embeddings()(hidden)
        logp = logits[row, col, token].float() - logits.float().logsumexp(-1)[row, col]  # lse once per position
        return torch.cat([pooled, grouped_logprob_summary(logp, index, len(pool_index))], dim=-1)

    def packed_features(self, groups: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]]) -> Tensor:
        """'c d' `forward`'s features of prefix + suffix for every suffix of every (prefix, suffixes)
        group, in order, each group's prefix read once (`pack`, then `forward_packed`). With
        `lm_logprobs` the mean and min token log-likelihood are those of the whole prefix + suffix."""
        return self.forward_packed(**{k: v.to(self.device) for k, v in self.pack(groups).items()})

    def spec(self) -> dict:
        """What `config.json` records to rebuild this backbone around saved weights."""
        return {
            "source": self.source, "pooling": self.pooling, "max_length": self.max_length,
            "padding_side": self.padding_side, "lora": asdict(self.lora) if self.lora else None,
            "lm_head": self.has_lm_head, "lm_logprobs": self.lm_logprobs, "dtype": dtype_name(self.dtype),
            "append_eos": self.append_eos, "logprob_scope": self.logprob_scope, "prompt_format": self.prompt_format,
        }

    def save_architecture(self, directory: Path) -> None:
        """Write the HF config and tokenizer (the weights live in the RM's safetensors)."""
        self.hf_config.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)

    @classmethod
    def from_architecture(cls, directory: Path, spec: dict) -> "Backbone":
        """Rebuild an un-initialised backbone from `save_architecture`'s files and `spec`.

        No code from the checkpoint runs: a model type transformers does not know is refused
        (`nexus.checkpoint.load_hf_config`) and transformers is called with trust_remote_code=False.
        """
        from nexus.checkpoint import load_hf_config

        config = load_hf_config(directory, trust_remote_code=False)
        lm_logprobs = bool(spec.get("lm_logprobs", False))
        lm_head = bool(spec.get("lm_head", lm_logprobs))  # older specs: the head came with the features
        model = (AutoModelForCausalLM if lm_head else AutoModel).from_config(config, trust_remote_code=False)
        if spec.get("dtype"):  # the saved weights' dtype, so loading them does not cast them back
            model = model.to(torch_dtype(spec["dtype"]))
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True, trust_remote_code=False)
        lora = LoraSpec(**spec["lora"]) if spec.get("lora") else None
        return cls(model, tokenizer, source=spec["source"], pooling=spec["pooling"],
                   max_length=spec["max_length"], padding_side=spec["padding_side"], lora=lora,
                   lm_logprobs=lm_logprobs, append_eos=spec.get("append_eos", True),
                   logprob_scope=spec.get("logprob_scope", "input"), prompt_format=spec.get("prompt_format", "chat"))

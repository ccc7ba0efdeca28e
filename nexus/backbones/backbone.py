"""`Backbone`: a transformer body, its tokenizer and a pooling rule (texts -> 'b d').

Legend: b batch, n tokens, d hidden.
"""

from __future__ import annotations

import inspect
import json
import re
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

from nexus.backbones.hub import dtype_name, torch_dtype
from nexus.conversation import is_conversation, messages, plain_text
from nexus.backbones.logprobs import (find_marker, grouped_logprob_summary, marker_position, running_logprob_stats,
                                      token_logprob_stats)
from nexus.backbones.lora import LoraSpec, apply_lora
from nexus.backbones.pooling import POOLERS
from nexus.validation import check_positive_int

# Model types that read text bidirectionally and are pooled by the masked mean.
ENCODER_TYPES = {
    "bert", "roberta", "xlm-roberta", "distilbert", "deberta", "deberta-v2",
    "electra", "albert", "mpnet", "modernbert",
}
# The separator between prompt and response for decoders without a chat template;
# the task LM (`arith-lm`) is trained on exactly this format.
PLAIN_TEMPLATE = "{prompt}\n\n{response}"
# max_length when none is given: the model's position limit, but at most this many tokens.
DEFAULT_MAX_LENGTH = 2048
# The character pre-cut (`Backbone.clip_text`) keeps max_length x this many characters (or x the
# longest vocabulary entry, if shorter) before it tokenises; more only makes it keep more text.
MAX_CHARS_PER_TOKEN = 32
# How a decoder reads a string prompt: "chat" renders (prompt, response) as a conversation through the
# tokenizer's chat template (`PLAIN_TEMPLATE` where it has none); "raw" takes the prompt as text that
# is already rendered (a templated query, TRL's standard data) and concatenates the response to it.
# Conversations always go through the chat template.
PROMPT_FORMATS = ("chat", "raw")
# What the log-likelihood features read: "response" (its tokens given the prompt) or "input" (every
# token after the first, prompt included, as checkpoints saved before the choice existed do).
LOGPROB_SCOPES = ("response", "input")
# A non-whitespace character followed by whitespace: the whitespace starts a new pre-token in
# every common pre-tokenizer (GPT-2/Llama-3 regexes, BERT, SentencePiece's metaspace).
_WORD_END = re.compile(r"\S(?=\s)")


def is_encoder_config(config) -> bool:
    """True for bidirectional encoders (mean pooling), False for decoders (last token)."""
    architectures = config.architectures or []
    if any(a.endswith(("CausalLM", "LMHeadModel")) for a in architectures):
        return False
    return config.model_type in ENCODER_TYPES


class RenderedText(str):
    """A prompt that is already the model's text (a chat template's rendering, as OpenRLHF and
    verl send it): a backbone concatenates the response to it as given, whatever its
    `prompt_format` (`Backbone.token_ids`)."""

    __slots__ = ()


class Backbone(nn.Module):
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

    def format(self, prompt, response) -> str:
        """The decoder's input text for one (prompt, response): the conversation (the prompt's
        messages, or one user message; then the response's, or one assistant message) through the
        tokenizer's chat template, rendered once with every role; without a chat template, the
        contents joined by blank lines (`PLAIN_TEMPLATE` for a string prompt and response)."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages(prompt, response), tokenize=False)
        return PLAIN_TEMPLATE.format(prompt=plain_text(prompt), response=plain_text(response))

    def response_marker(self) -> tuple[list[int], bool]:
        """(token ids that end the prompt part of `format`'s text, whether to take their last
        occurrence): the assistant header of a chat template (last: a prompt may hold earlier turns),
        or the blank line between prompt and response of `PLAIN_TEMPLATE` (first). ([], False) when
        the template's tokens do not split cleanly there; then every token is scored."""
        if self._marker is None:
            tok, marker, last = self.tokenizer, [], False
            if getattr(tok, "chat_template", None):
                turn = [{"role": "user", "content": "x"}]
                bare = tok.apply_chat_template(turn, add_generation_prompt=False, tokenize=True)
                header = tok.apply_chat_template(turn, add_generation_prompt=True, tokenize=True)
                bare, header = list(getattr(bare, "input_ids", bare)), list(getattr(header, "input_ids", header))
                if header[:len(bare)] == bare:
                    marker, last = header[len(bare):], True
            else:
                full = tok(PLAIN_TEMPLATE.format(prompt="x", response="y"), add_special_tokens=False)["input_ids"]
                x, y = (tok(t, add_special_tokens=False)["input_ids"] for t in ("x", "y"))
                if full[:len(x)] == x and full[len(full) - len(y):] == y:
                    marker = full[len(x):len(full) - len(y)]
            self._marker = (marker, last)
        return self._marker

    def assistant_turn(self) -> tuple[str, str] | None:
        """(the text that opens an assistant turn, the text that closes it) in the chat template's
        rendering, e.g. ("<|im_start|>assistant\\n", "<|im_end|>\\n"); None without a template, or
        where the template does not render a turn as header + content + closing text."""
        tok = self.tokenizer
        if not getattr(tok, "chat_template", None):
            return None
        mark, user = "\u2063nexus-response\u2063", [{"role": "user", "content": "x"}]
        bare = tok.apply_chat_template(user, tokenize=False)
        opened = tok.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
        full = tok.apply_chat_template([*user, {"role": "assistant", "content": mark}], tokenize=False)
        if not opened.startswith(bare) or full.count(mark) != 1 or not full.startswith(opened + mark):
            return None
        return opened[len(bare):], full[full.index(mark) + len(mark):]

    def scored_from(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor | None:
        """'b' the first position the log-likelihood features score (just after the prompt), or None
        to score every token after the first (`logprob_scope="input"`)."""
        if self.logprob_scope == "input":
            return None
        marker, last = self.response_marker()
        return find_marker(input_ids, attention_mask, marker, last)

    def _vocabulary_stats(self) -> tuple[int, bool]:
        """(characters the longest vocabulary entry spells, whether every token is one character or
        byte), the latter for a BPE model without merges such as the byte tokenizer of the tiny
        backbones. Cached per vocabulary size, since a family may add tokens (the process RM)."""
        size = len(self.tokenizer)
        if self._vocab_stats is None or self._vocab_stats[0] != size:
            longest = max(map(len, self.tokenizer.get_vocab()), default=1)
            per_char = False
            backend = getattr(self.tokenizer, "backend_tokenizer", None)
            if backend is not None:
                model = json.loads(backend.to_str()).get("model", {})
                per_char = model.get("type") == "BPE" and not model.get("merges")
            self._vocab_stats = (size, longest, per_char)
        return self._vocab_stats[1:]

    def clip_text(self, text: str) -> str:
        """`text`, or a suffix of it with the same last `max_length` tokens, cut by characters so that
        a huge string is never tokenised whole (truncation keeps the end of the input anyway).

        A text over max_length x min(longest vocabulary entry, `MAX_CHARS_PER_TOKEN`) characters is cut
        there; with a tokenizer whose tokens can merge characters, the cut moves back to where a word
        ends and whitespace starts (at most as far again), since pre-tokenizers split there. The cut is
        then checked: the suffix, tokenised alone, must hold more than max_length tokens that start
        past the first word (a per-character tokenizer: past the longest vocabulary entry), which the
        cut cannot have changed; otherwise (e.g. long whitespace a tokenizer drops) the text is kept
        whole. So tokenising the result and keeping the last max_length tokens is exactly what
        tokenising `text` and truncating gives. Slow tokenizers (no offsets) get `text` back.
        """
        if not getattr(self.tokenizer, "is_fast", False):
            return text
        longest, per_char = self._vocabulary_stats()
        budget = self.max_length * max(1, min(longest, MAX_CHARS_PER_TOKEN)) + longest
        if len(text) <= budget:
            return text
        start = len(text) - budget
        if per_char:
            trusted_from = longest  # a token straddling the cut (an added token) ends before this
        else:
            window = text[max(0, start - budget):start + 1]
            ends = [m.start() for m in _WORD_END.finditer(window)]
            if not ends:
                return text
            start = max(0, start - budget) + ends[-1] + 1
            following = _WORD_END.search(text, start + 1, start + budget)
            if following is None:
                return text
            trusted_from = following.start() + 1 - start
        clipped = text[start:]
        offsets = self.tokenizer(clipped, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        trusted = sum(1 for begin, _ in offsets if begin >= trusted_from)
        return clipped if trusted > self.max_length else text

    def reads_raw(self, prompt) -> bool:
        """Whether `prompt` is taken as already-rendered text: a `RenderedText`, or any string prompt
        with `prompt_format="raw"` (conversations always go through the chat template)."""
        return isinstance(prompt, RenderedText) or (self.prompt_format == "raw" and isinstance(prompt, str))

    def token_ids(self, prompts: Sequence, responses: Sequence) -> list[list[int]]:
        """Token ids per pair, not yet truncated or padded: the one rule for the text every family
        that reads a backbone trains, scores, packs, exports and serves on.

        - A decoder with a chat template reads the conversation (`messages`) exactly as
          `tokenizer.apply_chat_template(conversation, tokenize=True)` builds it (the model card's
          usage, TRL's and RewardBench's for conversational data).
        - A decoder without one reads `PLAIN_TEMPLATE` (prompt, blank line, response) with the
          tokenizer's own special tokens (what `arith-lm` is trained on).
        - Already-rendered text (`reads_raw`: a `RenderedText` prompt or `prompt_format="raw"`)
          is `prompt + response` as given, with the tokenizer's special tokens unless it already
          starts with bos (TRL's standard data; a templated OpenRLHF or verl query).
        - Then an eos is appended, unless the text already closes in a special token (trailing
          whitespace aside): a chat template that ends the assistant turn (`<|im_end|>\\n`,
          `<|eot_id|>`, `<end_of_turn>\\n`) gets nothing, plain text gets eos as TRL gives it.
        - An encoder reads the tokenizer's pair encoding, `tokenizer(prompt, response)` (`[CLS] p
          [SEP] r [SEP]`, or `[CLS] p [SEP]` for an empty response, as the tokenizer encodes it;
          conversations as plain text); the token types it returns are rebuilt from the ids at
          the forward pass (`token_type_ids`).

        Over-long texts are first cut by characters (`clip_text`; for encoders the prompt and the
        response each), which leaves the last `max_length` tokens exactly as they would be.
        """
        tok = self.tokenizer
        if self.is_encoder:
            prompts = [self.clip_text(plain_text(p)) for p in prompts]
            responses = [self.clip_text(plain_text(r)) for r in responses]
            ids = tok(list(prompts), list(responses), truncation=False)["input_ids"]
            alone = [i for i, r in enumerate(responses) if not r]  # tokenizer(p, "") encodes p alone
            if alone:
                for i, seq in zip(alone, tok([prompts[i] for i in alone], truncation=False)["input_ids"]):
                    ids[i] = seq
            return ids
        texts, specials = [], []
        for p, r in zip(prompts, responses):
            if self.reads_raw(p) and not is_conversation(r):
                text = p + plain_text(r)
                specials.append(not (tok.bos_token and text.startswith(tok.bos_token)))
            else:
                text = self.format(p, r)
                specials.append(not getattr(tok, "chat_template", None))
            texts.append(self.clip_text(text))
        ids: list[list[int] | None] = [None] * len(texts)
        for flag in (True, False):  # one tokenizer call per choice of special tokens
            rows = [i for i, s in enumerate(specials) if s is flag]
            if rows:
                for i, seq in zip(rows, tok([texts[i] for i in rows], add_special_tokens=flag)["input_ids"]):
                    ids[i] = self.closed(seq)
        return ids

    def _closing_ids(self) -> frozenset[int]:
        """Ids of every special token (bos, eos, pad and the added special tokens such as a chat
        template's `<|im_end|>` or `<|eot_id|>`); cached per vocabulary size."""
        tok = self.tokenizer
        if self._closers is None or self._closers[0] != len(tok):
            added = getattr(tok, "added_tokens_decoder", {}) or {}
            special = set(tok.all_special_ids) | {i for i, t in added.items() if getattr(t, "special", False)}
            self._closers = (len(tok), frozenset(special))
        return self._closers[1]

    def closed(self, seq: list[int]) -> list[int]:
        """`seq`, with eos appended unless its last token that is not whitespace is a special token.
        With `append_eos` off (by default where the pad token is the eos) trailing eos are
        dropped instead (the pad token is the eos): transformers pools at the last token that is not pad,
        so it never reads them."""
        eos = self.tokenizer.eos_token_id
        if not self.append_eos:
            end = len(seq)
            while end > 1 and seq[end - 1] == eos:
                end -= 1
            return seq[:end]
        special, j = self._closing_ids(), len(seq) - 1
        while j >= 0 and seq[j] not in special and not self.tokenizer.decode([seq[j]]).strip():
            j -= 1
        return seq if j >= 0 and seq[j] in special else [*seq, eos]

    @property
    def uses_token_types(self) -> bool:
        """Whether the body reads token types: an encoder whose tokenizer returns `token_type_ids`
        and whose config embeds more than one type (BERT, MiniLM; not RoBERTa or DistilBERT)."""
        return (self.is_encoder and "token_type_ids" in getattr(self.tokenizer, "model_input_names", ())
                and int(getattr(self.hf_config, "type_vocab_size", 0) or 0) > 1)

    def token_type_ids(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor | None:
        """'b n' the pair encoding's token types, rebuilt from the ids: 0 up to and including the
        first separator (`[CLS] prompt [SEP]`), 1 after it (`response [SEP]`), 0 on padding, as
        `tokenizer(prompt, response)` returns them; None where the body reads none."""
        if not self.uses_token_types:
            return None
        sep = (input_ids == self.tokenizer.sep_token_id).long()
        after = (sep.cumsum(-1) - sep) > 0
        return (after & attention_mask.bool()).long()

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

"""`TextRule`: how a backbone turns (prompt, response) into token ids, the one place nexus builds
the text a reward model reads (see `TextRule.token_ids` for the rule and docs/conventions.md for
why it follows the model cards, TRL, RewardBench, OpenRLHF and verl).

Legend: b batch, n tokens.
"""

from __future__ import annotations

import json
import re
from typing import Sequence

from torch import Tensor

from nexus.conversation import is_conversation, messages, plain_text

# The separator between prompt and response for decoders without a chat template;
# the task LM (`arith-lm`) is trained on exactly this format.
PLAIN_TEMPLATE = "{prompt}\n\n{response}"
# The character pre-cut (`Backbone.clip_text`) keeps max_length x this many characters (or x the
# longest vocabulary entry, if shorter) before it tokenises; more only makes it keep more text.
MAX_CHARS_PER_TOKEN = 32
# How a decoder reads a string prompt: "chat" renders (prompt, response) as a conversation through the
# tokenizer's chat template (`PLAIN_TEMPLATE` where it has none); "raw" takes the prompt as text that
# is already rendered (a templated query, TRL's standard data) and concatenates the response to it.
# Conversations always go through the chat template.
PROMPT_FORMATS = ("chat", "raw")
# A non-whitespace character followed by whitespace: the whitespace starts a new pre-token in
# every common pre-tokenizer (GPT-2/Llama-3 regexes, BERT, SentencePiece's metaspace).
_WORD_END = re.compile(r"\S(?=\s)")


class RenderedText(str):
    """A prompt that is already the model's text (a chat template's rendering, as OpenRLHF and
    verl send it): a backbone concatenates the response to it as given, whatever its
    `prompt_format` (`Backbone.token_ids`)."""

    __slots__ = ()


class TextRule:
    """The text half of `Backbone`: rendering, the closing eos, the character pre-cut and the token
    types. It reads the backbone's `tokenizer`, `is_encoder`, `hf_config`, `max_length`,
    `prompt_format` and `append_eos`, and keeps small caches (`_marker`, `_vocab_stats`,
    `_closers`, `_blank`) that `Backbone.__init__` sets up."""

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
        while j >= 0 and seq[j] not in special and self._is_blank(seq[j]):
            j -= 1
        return seq if j >= 0 and seq[j] in special else [*seq, eos]

    def _is_blank(self, token: int) -> bool:
        """Whether a token decodes to whitespace only (cached: inputs end in few distinct tokens)."""
        blank = self._blank.get(token)
        if blank is None:
            blank = self._blank[token] = not self.tokenizer.decode([token]).strip()
        return blank

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


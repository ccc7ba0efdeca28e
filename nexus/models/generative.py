"""Generative RM: a causal LM as judge (LLM-as-judge), read from its next-token logits.

`verdict` (GenRM, Zhang et al. 2024): the judge reads the prompt, the response and "Is the answer
correct?"; the reward is logit[Yes] - logit[No] at the next position, one forward pass, no sampling.
`rating`: the expected 1-10 rating under the next-token distribution restricted to the rating tokens.
`compare` (Zheng et al. 2023): the judge names the better of two answers, asked in both orders.
`explain`: the judge first writes a critique, then gives its verdict; GenRM-CoT averages the verdict
probability over `n_critiques` sampled critiques. `principles` (Bai et al. 2022, Constitutional AI):
one verdict per principle, combined with weights. `read="generate"`: the verdict is generated and
parsed instead (the slow baseline); unreadable text gives a NaN reward and a flag, never a score.
Legend: b batch, n tokens, v vocabulary, p principles, c critiques per input, k positions read.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import ClassVar, Mapping, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import Tensor
from transformers import AutoModelForCausalLM

from nexus import prompts as templates_lib
from nexus.backbones import Backbone, LoraSpec, resolve_backbone_dir
from nexus.backbone_model import BACKBONE_DIR, BackboneRewardModel
from nexus.outputs import RewardOutput
from nexus.conversation import as_plain
from nexus.inputs import validate_inputs
from nexus.batching import PACKED_MAX_TOKENS, PromptGroup, prompt_groups
from nexus.data.collators import IGNORE
from nexus.models import judge

PROMPTS_DIR = "prompts"
MODES, READS = ("verdict", "rating"), ("logits", "generate", "confirmation")
VERDICT_WORDS = (("Yes", "No"), ("Y", "N"))  # the second pair for byte-level tokenizers (the tiny models)


def causal_lm_backbone(backbone: Backbone) -> Backbone:
    """`backbone` if its LM head is loaded; else the same body with its head attached.

    A head tied to the input embeddings is rebuilt exactly; a random tiny model gets a seeded random
    head; any other backbone must be loaded with `lm_head=True` (its head read from its files).
    LoRA adapters are freshly initialised here (B = 0), so taking them off and on again loses nothing.
    """
    if isinstance(backbone.lora, Mapping):  # e.g. a Hydra DictConfig: the spec is saved as a dataclass
        backbone.lora = LoraSpec(**backbone.lora)
    base = backbone.model.get_base_model() if hasattr(backbone.model, "get_base_model") else backbone.model
    if backbone.is_encoder:
        raise ValueError(f"backbone {backbone.source!r} is an encoder; a judge needs a causal LM")
    if base.get_output_embeddings() is not None:
        return backbone
    tied = bool(getattr(backbone.hf_config, "tie_word_embeddings", False))
    if not tied and resolve_backbone_dir(backbone.source) is not None:
        raise ValueError(f"backbone {backbone.source!r} was loaded without its LM head, which is not tied to its "
                         "embeddings: load it with lm_head=True (backbone.lm_head=true)")
    body = backbone.model.unload() if backbone.lora else backbone.model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        lm = AutoModelForCausalLM.from_config(backbone.hf_config, trust_remote_code=False)
    lm.base_model.load_state_dict(body.state_dict())
    if tied:
        lm.tie_weights()
    return Backbone(lm, backbone.tokenizer, source=backbone.source, pooling=backbone.pooling,
                    max_length=backbone.max_length, padding_side=backbone.padding_side, lora=backbone.lora,
                    lm_logprobs=backbone.lm_logprobs)


def _word_pairs(value, field: str) -> list[tuple[str, str]]:
    """One pair ("Yes", "No") or a list of candidate pairs -> a list of pairs (JSON/YAML friendly)."""
    if len(value) == 2 and all(isinstance(w, str) for w in value):
        return [(value[0], value[1])]
    pairs = []
    for i, pair in enumerate(value):
        if isinstance(pair, str) or len(pair) != 2 or not all(isinstance(w, str) for w in pair):
            raise ValueError(f"{field}[{i}] = {pair!r}: expected a pair of strings "
                             "(YAML reads an unquoted Yes/No as a boolean: quote them)")
        pairs.append((pair[0], pair[1]))
    return pairs


def _principle_weights(principles: Sequence[str], weights: Sequence[float] | None) -> list[float]:
    """Weights normalised to sum 1 (equal by default); errors name the offending index."""
    for i, text in enumerate(principles):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"principles[{i}] = {text!r}: expected a non-empty string")
    if weights is None:
        weights = [1.0] * len(principles)
    if len(weights) != len(principles):
        raise ValueError(f"{len(weights)} principle_weights for {len(principles)} principles")
    for i, w in enumerate(weights):
        if not w >= 0:
            raise ValueError(f"principle_weights[{i}] = {w!r}: expected a number >= 0")
    total = float(sum(weights))
    if principles and total <= 0:
        raise ValueError("principle_weights sum to 0")
    return [float(w) / total for w in weights] if principles else []


def _check_options(mode: str, read: str, explain: bool, n_critiques: int, critique_temperature: float) -> None:
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: expected one of {MODES} (pairwise judging is `compare`)")
    if read not in READS:
        raise ValueError(f"read={read!r}: expected one of {READS}")
    if n_critiques < 1 or critique_temperature < 0:
        raise ValueError(f"n_critiques={n_critiques} must be >= 1 and critique_temperature={critique_temperature} >= 0")
    if explain and n_critiques > 1 and critique_temperature == 0:
        raise ValueError(f"n_critiques={n_critiques} with critique_temperature=0 would repeat one greedy critique")


class GenerativeRewardModel(BackboneRewardModel):
    """A causal-LM judge behind `score` and `compare`.

    `score` returns `rewards: 'b'`: the verdict log-odds logit[yes] - logit[no] (mode `verdict`,
    with critiques the log-odds of the mean P(yes)), or the expected rating in [1, 10] (mode
    `rating`); with `read="generate"` the share of parsed yes verdicts (or the mean parsed rating),
    NaN where no output could be read, flagged in `extras["unreadable"]: 'b'` bool; with
    `read="confirmation"` (a judge fine-tuned on a `rationale`) the log-odds of writing the
    rationale's confirming check, then yes, in one forward (`judge.confirmation_log_odds`). With principles
    the reward is their weighted mean and `extras["principle_rewards"]: 'b p'`. `explanations`
    holds the critiques with `explain=True`, else None. `uncertainty` and `step_rewards` are None.
    """

    reads_conversations = False  # its prompt templates take text: conversations arrive as plain text
    reads_features = False  # the verdict is read from the LM head, not from pooled features
    model_type = "generative"
    saved_entries = (BACKBONE_DIR, PROMPTS_DIR)
    data_format: ClassVar[str] = "outcome"

    def __init__(self, backbone: Backbone, mode: str = "verdict", read: str = "logits", explain: bool = False,
                 n_critiques: int = 1, critique_temperature: float = 0.0, critique_max_tokens: int = 128,
                 answer_max_tokens: int = 8, principles: Sequence[str] = (), principle_weights=None,
                 verdict_words=VERDICT_WORDS, compare_labels=(("A", "B"),), template: str = "auto",
                 prompt_dir: str | None = None, rationale: str | None = None, solve_first: bool = False,
                 seed: int = 0, batch_size: int = 8):
        super().__init__(batch_size=batch_size)
        _check_options(mode, read, explain, n_critiques, critique_temperature)
        if solve_first and not explain:
            raise ValueError("solve_first=True: the judge's own solution is its critique; set explain=True")
        self.backbone = causal_lm_backbone(backbone)
        self.mode, self.read, self.explain, self.n_critiques = mode, read, explain, n_critiques
        self.critique_temperature, self.critique_max_tokens = critique_temperature, critique_max_tokens
        self.answer_max_tokens, self.template, self.prompt_dir = answer_max_tokens, template, prompt_dir
        if isinstance(principles, str):
            raise ValueError(f"principles={principles!r}: expected a list of principle strings, got one string")
        self.principles = list(principles)
        self.principle_weights = None if principle_weights is None else [float(w) for w in principle_weights]
        self.weights = _principle_weights(self.principles, self.principle_weights)
        self.verdict_words = _word_pairs(verdict_words, "verdict_words")
        self.compare_labels = _word_pairs(compare_labels, "compare_labels")
        self.rationale, self.seed, self.solve_first = rationale, seed, bool(solve_first)
        if read == "confirmation":
            judge.check_confirmation(mode, explain, self.principles, rationale)
        tokenizer = self.backbone.tokenizer
        self.chat = templates_lib.uses_chat(tokenizer, template)
        self.templates = templates_lib.load_templates(prompt_dir)
        # Resolved once: the words the prompts name are exactly the tokens that are read.
        self.yes_no, self.yes_no_ids = judge.resolve_word_pair(tokenizer, self.verdict_words, "verdict_words")
        self.ab, self.ab_ids = judge.resolve_word_pair(tokenizer, self.compare_labels, "compare_labels")
        self.rating_ids, self.zero_id = judge.rating_token_ids(tokenizer) if mode == "rating" else ([], None)
        # Read the token prefix a batch's contexts share (the template, a repeated question) once;
        # a speed option, not saved: the logits agree to float error.
        self.share_prefix = True

    @property
    def lm(self):
        """The causal LM (LoRA layers are injected in place, so the unwrapped model runs them)."""
        model = self.backbone.model
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    # ---- prompts --------------------------------------------------------------------------------

    def question(self, principle: str | None = None) -> str:
        """The final user message: the verdict or rating question, about one principle or overall."""
        yes, no = self.yes_no
        name = self.mode if principle is None else f"principle_{self.mode}"
        return self.templates[name].format(yes=yes, no=no, principle=principle)

    def critique_request(self, prompt: str, response: str, principles: Sequence[str] = ()) -> str:
        """The user message asking for a critique (against `principles` where given); with
        `solve_first`, asking the judge to solve the prompt itself (the response is not shown)."""
        if self.solve_first:
            return self.templates["solve"].format(prompt=prompt)
        task = self.templates["task"].format(prompt=prompt, response=response)
        if not principles:
            return f"{task}\n\n{self.templates['critique']}"
        listed = "\n".join(f"- {p}" for p in principles)
        return f"{task}\n\n{self.templates['critique_principles'].format(principles=listed)}"

    def render(self, messages: Sequence[str]) -> str:
        """A conversation as the judge reads it (chat template or plain), up to the judge's turn."""
        return templates_lib.render(self.backbone.tokenizer, messages, self.chat)

    def token_ids(self, text: str) -> list[int]:
        """Token ids of rendered text (a chat template writes its own special tokens)."""
        return self.backbone.tokenizer(text, add_special_tokens=not self.chat)["input_ids"]

    def verdict_ids(self, prompt: str, response: str, principle: str | None = None,
                    critique: str | None = None) -> tuple[list[int], tuple[int, int] | None]:
        """Token ids of the context whose next token is the verdict, and the critique's token span.

        With a critique the ids are built in pieces (context, critique, the rest), as generation
        produced them; training supervises the rationale on exactly that span.
        """
        task = self.templates["task"].format(prompt=prompt, response=response)
        if critique is None:
            return self.token_ids(self.render([f"{task}\n\n{self.question(principle)}"])), None
        request = self.critique_request(prompt, response, self.principles)
        head = self.render([request])
        if self.solve_first:  # the judge has solved the prompt; now it is shown the response
            final = self.templates["solved_verdict"].format(response=response, yes=self.yes_no[0], no=self.yes_no[1])
        else:
            final = self.question(principle)
        full = self.render([request, critique, final])
        if not full.startswith(head + critique):
            raise ValueError("the chat template does not render the critique verbatim after the request; "
                             "use template='plain'")
        first, middle = self.token_ids(head), self.backbone.tokenizer(critique, add_special_tokens=False)["input_ids"]
        rest = self.backbone.tokenizer(full[len(head) + len(critique):], add_special_tokens=False)["input_ids"]
        return first + middle + rest, (len(first), len(first) + len(middle))

    def compare_ids(self, prompt: str, first: str, second: str) -> list[int]:
        """Token ids of the pairwise question with `first` shown as answer A and `second` as B."""
        a, b = self.ab
        text = self.templates["compare"].format(prompt=prompt, response_first=first, response_second=second,
                                                first=a, second=b)
        return self.token_ids(self.render([text]))

    # ---- the LM ---------------------------------------------------------------------------------

    def _left_pad(self, ids: list[list[int]]) -> dict[str, Tensor]:
        """Left-padded contexts on the device (the read positions line up at the end); over-long
        contexts lose their start, with a warning (`Backbone.collate`)."""
        return {k: v.to(self.device) for k, v in self.backbone.collate(ids, padding_side="left").items()}

    def _logits(self, input_ids: Tensor, attention_mask: Tensor, keep: int = 0) -> Tensor:
        """'b n', 'b n' -> 'b k v' logits of the last `keep` positions (0: all)."""
        return self.lm(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep,
                       use_cache=False, **self.backbone.position_kwargs(attention_mask)).logits

    def next_token_logits(self, ids: list[list[int]], keep: int = 1) -> Tensor:
        """'m k v' float logits at the last `keep` positions of each context, in chunks of `batch_size`.

        With `share_prefix` and `keep=1`, a chunk whose contexts share a token prefix (the system
        prompt and instructions of the template, at least) is packed into rows that read the prefix
        once (`Backbone.pack`), and the LM head runs at the c read positions only.
        """
        out = []
        for start in range(0, len(ids), self.batch_size):
            chunk = ids[start:start + self.batch_size]
            groups = self._prefix_groups(chunk) if keep == 1 else []
            if groups:
                out.append(self._packed_next_logits(groups).float().cpu())
            else:
                out.append(self._logits(**self._left_pad(chunk), keep=keep).float().cpu())
        return torch.cat(out)

    def _prefix_groups(self, chunk: list[list[int]]) -> list[PromptGroup]:
        """The chunk as rows that share its token prefix (`prompt_groups`, rows of at most
        `PACKED_MAX_TOKENS`, so attention stays short); [] where it can't be packed."""
        if not (self.share_prefix and self.backbone.can_pack):
            return []
        groups, alone = prompt_groups([""] * len(chunk), chunk, self.backbone.max_length, PACKED_MAX_TOKENS)
        return [] if alone else groups  # alone: one context, an over-long one, or no shared token

    def _packed_next_logits(self, groups: list[PromptGroup]) -> Tensor:
        """'c 1 v' next-token logits of the contexts packed in `groups`, each group's prefix read once."""
        batch = {k: v.to(self.device) for k, v in self.backbone.pack([(g.prefix, g.suffixes) for g in groups]).items()}
        hidden = self.backbone.packed_hidden(batch["input_ids"], batch["attention_mask"], batch["position_ids"])
        last = hidden[batch["pool_index"][:, 0], batch["pool_index"][:, 1]]
        return self.lm.get_output_embeddings()(last)[:, None]

    def stop_ids(self) -> list[int]:
        """Tokens that end the judge's turn: the tokenizer's eos and the model's (e.g. Gemma's end_of_turn)."""
        configured = self.lm.generation_config.eos_token_id
        configured = configured if isinstance(configured, list) else [configured]
        return sorted({self.backbone.tokenizer.eos_token_id, *configured} - {None})

    def generate(self, ids: list[list[int]], n: int = 1, temperature: float = 0.0,
                 max_new_tokens: int = 64) -> list[list[str]]:
        """Per context, `n` continuations (greedy at temperature 0), decoded without special tokens."""
        tokenizer, out = self.backbone.tokenizer, []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for start in range(0, len(ids), max(1, self.batch_size // n)):
                batch = self._left_pad(ids[start:start + max(1, self.batch_size // n)])
                sample = temperature > 0
                room = self._room(batch["input_ids"].shape[1], max_new_tokens)
                generated = self.lm.generate(
                    **batch, do_sample=sample, temperature=temperature if sample else None, top_p=None, top_k=None,
                    num_return_sequences=n, max_new_tokens=room, pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=self.stop_ids())
                texts = tokenizer.batch_decode(generated[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
                out += [texts[j:j + n] for j in range(0, len(texts), n)]
        return out

    def _room(self, context: int, wanted: int) -> int:
        """New tokens that fit after `context` tokens within the model's positions (a model with
        learned position embeddings cannot read past them), at most `wanted`; a shortened
        generation is warned about, never silent."""
        limit = self.backbone.position_limit
        if limit is None or context + wanted <= limit:
            return wanted
        room = max(1, limit - context)
        warnings.warn(f"generation cut to {room} new tokens (asked {wanted}): contexts of {context} tokens and the "
                      f"judge's {limit} positions", stacklevel=3)
        return room

    # ---- reading verdicts -----------------------------------------------------------------------

    def read_logits(self, ids: list[list[int]]) -> Tensor:
        """'m': the verdict log-odds, or the expected rating, of each context from one forward pass."""
        if self.mode == "verdict":
            logits = self.next_token_logits(ids)[:, -1]
            yes, no = self.yes_no_ids
            return logits[:, yes] - logits[:, no]
        if self.zero_id is None:
            return judge.expected_rating(judge.rating_distribution(self.next_token_logits(ids)[:, -1], self.rating_ids))
        one = self.rating_ids[0]  # "10" is "1" then "0": read after the context and after an appended "1"
        logits = self.next_token_logits([seq + [one] for seq in ids], keep=2)
        probs = judge.rating_distribution(logits[:, 0], self.rating_ids, logits[:, 1], self.zero_id)
        return judge.expected_rating(probs)

    def read_generated(self, ids: list[list[int]]) -> Tensor:
        """'m': the generated verdict parsed (1 yes, 0 no) or the parsed rating; NaN where unreadable."""
        texts = [t[0] for t in self.generate(ids, 1, 0.0, self.answer_max_tokens)]
        parse = (lambda t: judge.parse_verdict(t, *self.yes_no)) if self.mode == "verdict" else judge.parse_rating
        values = [parse(t) for t in texts]
        return torch.tensor([float("nan") if v is None else v for v in values], dtype=torch.float32)

    def critique(self, prompts: Sequence[str], responses: Sequence[str],
                 principles: Sequence[Sequence[str]] | None = None, n: int = 1,
                 temperature: float | None = None) -> list[list[str]]:
        """Per input, `n` critiques (against that input's principles where given), stripped."""
        principles = principles or [self.principles] * len(prompts)
        ids = [self.token_ids(self.render([self.critique_request(p, r, c)]))
               for p, r, c in zip(prompts, responses, principles)]
        temperature = self.critique_temperature if temperature is None else temperature
        return [[t.strip() for t in texts] for texts in self.generate(ids, n, temperature, self.critique_max_tokens)]

    # ---- score and compare ----------------------------------------------------------------------

    def _combine(self, values: Tensor) -> Tensor:
        """'b p c' per-principle, per-critique values -> 'b p' (over critiques, by the reading's rule)."""
        if self.read == "generate":
            return values.nanmean(-1)  # vote share (or mean rating) of the readable outputs; all unreadable: NaN
        if self.mode == "verdict":
            return judge.mean_probability_log_odds(values)
        return reduce(values, "b p c -> b p", "mean")

    def _score_batch(self, prompts: list[str], responses: list[str]) -> RewardOutput:
        if self.read == "confirmation":
            return RewardOutput(rewards=judge.confirmation_log_odds(self, prompts, responses).float())
        n_critiques = self.n_critiques if self.explain else 1
        critiques = self.critique(prompts, responses, n=n_critiques) if self.explain else [[None]] * len(prompts)
        topics = self.principles or [None]
        ids = [self.verdict_ids(p, r, t, c)[0] for p, r, cs in zip(prompts, responses, critiques)
               for t in topics for c in cs]
        flat = self.read_generated(ids) if self.read == "generate" else self.read_logits(ids)
        values = rearrange(flat, "(b p c) -> b p c", b=len(prompts), p=len(topics))
        per_principle = self._combine(values)
        weights = torch.tensor(self.weights or [1.0])
        rewards = per_principle @ weights
        extras = {}
        if self.principles:
            extras["principle_rewards"] = per_principle
        if self.read == "generate":
            extras["unreadable"] = rewards.isnan()
            extras["unreadable_fraction"] = reduce(values.isnan().float(), "b p c -> b", "mean")
        explanations = [_join(cs) for cs in critiques] if self.explain else None
        return RewardOutput(rewards=rewards, explanations=explanations, extras=extras or None)

    @torch.inference_mode()
    def compare_orders(self, prompts: Sequence[str], responses_a: Sequence[str],
                       responses_b: Sequence[str]) -> tuple[Tensor, Tensor]:
        """('b', 'b'): P(a better) when a is shown first, and when a is shown second (the judge
        reads A and B as the next token, restricted to those two)."""
        validate_inputs(prompts, responses_a)
        validate_inputs(prompts, responses_b)
        # the judge's templates take text: conversations as plain text, as in `score`
        prompts, responses_a, responses_b = ([as_plain(x) for x in xs] for xs in (prompts, responses_a, responses_b))
        was_training = self.training
        self.eval()
        try:
            ids = [self.compare_ids(p, a, b) for p, a, b in zip(prompts, responses_a, responses_b)]
            ids += [self.compare_ids(p, b, a) for p, a, b in zip(prompts, responses_a, responses_b)]
            logits = self.next_token_logits(ids)[:, -1]
        finally:
            self.train(was_training)
        first, second = self.ab_ids
        a_first, a_second = rearrange(logits[:, first] - logits[:, second], "(two b) -> two b", two=2)
        return torch.sigmoid(a_first), torch.sigmoid(-a_second)

    def compare(self, prompts: Sequence[str], responses_a: Sequence, responses_b: Sequence) -> Tensor:
        """'b': P(a preferred to b), asked in both orders and averaged: 0.5 (P_ab(A) + P_ba(B)).

        Averaging over the swap cancels position bias to first order, and makes
        compare(a, b) = 1 - compare(b, a) exactly. The judge's own probability (T = 1): the
        temperature `calibrate` fits belongs to the Bradley-Terry reading of `score`.
        """
        a_first, a_second = self.compare_orders(prompts, responses_a, responses_b)
        return 0.5 * (a_first + a_second)

    # ---- training -------------------------------------------------------------------------------

    def training_loss(self, forward, batch: dict, config) -> tuple[Tensor, dict[str, Tensor]]:
        """`forward` computes the loss itself from the whole batch: the next-token loss of the verdict (and rationale)."""
        outputs = forward(**batch)
        return outputs["loss"], outputs

    def forward(self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor | None = None,
                lm_targets: Tensor | None = None, verdict_tokens: Tensor | None = None) -> dict[str, Tensor]:
        """Next-token training of the verdict (GenRM's SFT objective), optionally after a rationale.

        Args:
            labels: 'b n' P(positive verdict) at positions whose next token is the verdict, IGNORE elsewhere.
            lm_targets: 'b n' next-token ids at rationale positions, -100 elsewhere.
            verdict_tokens: 'b 2' each row's positive and negative verdict token (None: yes/no).

        Returns:
            {"logits": 'b n' verdict log-odds at every position, "loss": '' mean next-token NLL over
            the verdict (soft labels mix the yes and no NLL) and rationale tokens} (loss with labels).
        """
        logits = self._logits(input_ids, attention_mask).float()
        yes, no = self.yes_no_ids
        out = {"logits": logits[..., yes] - logits[..., no]}
        if labels is None:
            return out
        given = labels != IGNORE
        logp = logits[given].log_softmax(-1)
        y = labels[given]
        words = (torch.tensor([yes, no], device=logp.device).expand(len(y), 2) if verdict_tokens is None
                 else verdict_tokens[given.nonzero()[:, 0]])
        picked = logp.gather(1, words)
        total = -(y * picked[:, 0] + (1 - y) * picked[:, 1]).sum()
        count = given.sum()
        if lm_targets is not None:
            total = total + F.cross_entropy(rearrange(logits, "b n v -> (b n) v"), lm_targets.flatten(),
                                            ignore_index=-100, reduction="sum")
            count = count + (lm_targets != -100).sum()
        out["loss"] = total / count.clamp(min=1)
        return out

    def data_collator(self, seed: int = 0):
        from nexus.data.judge import VerdictCollator

        return VerdictCollator(self, self.rationale, seed=seed)

    # ---- checkpoints ----------------------------------------------------------------------------

    def config_dict(self) -> dict:
        return {"backbone": self.backbone.spec(), "mode": self.mode, "read": self.read, "explain": self.explain,
                "n_critiques": self.n_critiques, "critique_temperature": self.critique_temperature,
                "critique_max_tokens": self.critique_max_tokens, "answer_max_tokens": self.answer_max_tokens,
                "principles": self.principles, "principle_weights": self.principle_weights,
                "verdict_words": [list(p) for p in self.verdict_words],
                "compare_labels": [list(p) for p in self.compare_labels], "template": self.template,
                "prompt_dir": self.prompt_dir, "rationale": self.rationale, "solve_first": self.solve_first,
                "seed": self.seed,
                "batch_size": self.batch_size}

    def _save_extra(self, directory: Path) -> None:
        self.backbone.save_architecture(directory / BACKBONE_DIR)
        templates_lib.save_templates(self.templates, directory / PROMPTS_DIR)

    @classmethod
    def _from_config(cls, config: dict, directory: Path) -> "GenerativeRewardModel":
        kwargs = {k: v for k, v in config.items() if k not in ("model_type", "backbone", "prompt_dir")}
        backbone = Backbone.from_architecture(directory / BACKBONE_DIR, config["backbone"])
        model = cls(backbone, prompt_dir=str(directory / PROMPTS_DIR), **kwargs)
        model.prompt_dir = config.get("prompt_dir")  # where the user's templates came from, as first saved
        return model


def _join(critiques: Sequence[str]) -> str:
    """One explanation per input: the critique, or numbered critiques where several were sampled."""
    if len(critiques) == 1:
        return critiques[0]
    return "\n\n".join(f"[critique {k + 1}] {text}" for k, text in enumerate(critiques))

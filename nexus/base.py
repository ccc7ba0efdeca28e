"""The one interface every reward model implements.

Legend: b batch, s steps.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import torch
from safetensors.torch import load_model, save_model
from torch import Tensor, nn
from tqdm.auto import tqdm

from nexus import checkpoint, losses, registry
from nexus.checkpoint import CONFIG_NAME, WEIGHTS_NAME
from nexus.batching import PromptGroup, token_budget_batches
from nexus.conversation import as_plain, is_conversation, key as as_key
from nexus.inputs import total_length, validate_inputs
from nexus.outputs import RewardOutput, gather_outputs
from nexus.validation import check_positive_int, read_json_object


# What a collated training batch hands to a model's forward: the padded inputs, plus the packed
# rows of `Backbone.pack` where the collator shares prompts.
MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids", "pool_index", "logprob_index")


def labelled_logits_loss(forward, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
    """The training loss of a family with a logit per position 'b n' and float `labels` 'b n'
    (IGNORE where unlabelled; soft labels allowed): binary cross-entropy over the labelled positions."""
    logits = forward(**{k: batch[k] for k in MODEL_INPUTS if k in batch})
    labels = batch["labels"]
    given = labels != losses.IGNORE
    return losses.binary_cross_entropy_loss(logits[given].float(), labels[given].float()), {"logits": logits}


class RewardModel(nn.Module, ABC):
    """Abstract reward model: `score`, `compare`, `save_pretrained`, `from_pretrained`.

    Subclasses set `model_type`, implement `_score_batch`, `config_dict` and
    `_from_config`; batching, validation, ordering and checkpoint I/O live here.
    """

    model_type: ClassVar[str]
    accepts_steps: ClassVar[bool] = False
    # Whether `_score_batch` takes conversations (lists of chat messages) as they are; a family that
    # reads text gets them as plain text (`nexus.conversation.plain_text`).
    reads_conversations: ClassVar[bool] = False
    # The data the family trains on: "pairwise" (Bradley-Terry), "outcome" or "process" (per-token labels).
    data_format: ClassVar[str] = "pairwise"
    # Whether the family's head reads the backbone's pooled features (so the log-likelihood features
    # `Backbone(lm_logprobs=True)` appends change what it sees); a judge reading its LM head does not.
    reads_features: ClassVar[bool] = False
    # Whether `_score_packed` exists: `score` then reads a prompt shared by several inputs once.
    packs_prompts: ClassVar[bool] = False
    # Top-level names (fnmatch patterns) `_save_extra` writes beside config.json and model.safetensors;
    # a folder holding anything else is not a checkpoint of this family (nexus.checkpoint).
    saved_entries: ClassVar[tuple[str, ...]] = ()
    # Per-input columns a family reads beside prompts and responses (a rule's `references`): `score`
    # and `compare` take them as keywords, check their length, and slice and reorder them with the
    # inputs for `_score_inputs` / `_score_batch`.
    input_columns: ClassVar[tuple[str, ...]] = ()
    # Per-call options a family applies to the whole output after scoring (objective `weights`):
    # checked by `_check_options` before any scoring, applied by `_finish`.
    call_options: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        """A subclass that sets `model_type` registers itself under it (`nexus.registry`), so that
        `nexus.load` finds it by the type in config.json; a second class claiming a taken type is an error."""
        super().__init_subclass__(**kwargs)
        model_type = cls.__dict__.get("model_type")
        if model_type is None:
            return
        registry.register(cls, model_type)

    def __init__(self, batch_size: int = 32):
        super().__init__()
        self.batch_size = check_positive_int("batch_size", batch_size)
        # Temperature of `compare`'s probability (1: uncalibrated); `calibrate` fits it and,
        # as a buffer, it is saved in model.safetensors with the weights.
        self.register_buffer("temperature", torch.ones(()))
        # Applied by `score` after the model (nexus.normalize); saved in config.json.
        self.normalizer = None
        # Token budget per batch for `score` (None: `batch_size` rows per batch).
        self.max_tokens: int | None = None

    @abstractmethod
    def _score_batch(self, prompts: list[str], responses: list, **columns) -> RewardOutput:
        """Score one batch (already validated, any order); `columns` holds the batch's slice of
        each of the family's `input_columns`."""

    def _check_columns(self, columns: dict[str, Any], n: int) -> dict[str, Any]:
        """The family's per-input columns, checked (errors name the index); the default requires a
        sequence of one entry per input for each column given."""
        for name, values in columns.items():
            if values is None:
                continue
            if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Sequence):
                raise ValueError(f"{name} must be a list with one entry per response, got {type(values).__name__}")
            if len(values) != n:
                raise ValueError(f"{name} has {len(values)} entries but there are {n} responses")
        return columns

    def _check_options(self, **options) -> dict[str, Any]:
        """The call's options, checked before any scoring (a family with `call_options` overrides)."""
        return options

    def _finish(self, out: RewardOutput, **options) -> RewardOutput:
        """The output of the whole call with the call's options applied (identity by default)."""
        return out

    def _split_keywords(self, keywords: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(columns, options) from `score`'s extra keywords; TypeError naming any the family lacks."""
        unknown = sorted(set(keywords) - set(self.input_columns) - set(self.call_options))
        if unknown:
            known = ", ".join(self.input_columns + self.call_options) or "none"
            raise TypeError(f"{type(self).__name__}.score() got unexpected keyword argument(s) {', '.join(unknown)} "
                            f"(this family's extra keywords: {known})")
        return ({k: v for k, v in keywords.items() if k in self.input_columns},
                {k: v for k, v in keywords.items() if k in self.call_options})

    def training_loss(self, forward, batch: dict, config) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss of one collated training batch, and what evaluation reads from it.

        `forward` is this model as the trainer wraps it (data parallel), called for every forward
        pass; `config` carries `loss`, `label_smoothing` and `center_rewards_coefficient`
        (`RewardTrainingArguments`). The default is the Bradley-Terry family: the batch holds
        chosen then rejected ('(2 b) n', or packed rows returning the '(2 b)' rewards in that
        order), one reward each; returns the loss and {"rewards": 'b 2'}. A family that trains
        otherwise overrides this (and its `data_collator`).
        """
        outputs = forward(**{k: batch[k] for k in MODEL_INPUTS if k in batch})
        chosen, rejected = outputs.reshape(2, -1).unbind(0)
        loss = losses.pairwise_loss(chosen, rejected, config.loss, batch.get("margin"), config.label_smoothing,
                                    config.center_rewards_coefficient)
        return loss, {"rewards": torch.stack([chosen, rejected], dim=-1)}

    def _score_packed(self, groups: list[PromptGroup]) -> RewardOutput:
        """Score every suffix of `groups` in order, each group's shared prefix read once (families
        that can set `packs_prompts = True`; see `Backbone.packed_features`)."""
        raise NotImplementedError(f"{type(self).__name__} does not share prompts")

    @abstractmethod
    def config_dict(self) -> dict:
        """Constructor arguments recorded in config.json (JSON-serialisable)."""

    @classmethod
    @abstractmethod
    def _from_config(cls, config: dict, directory: Path) -> "RewardModel":
        """Build an un-initialised model from `config_dict()` and its saved files."""

    def _save_extra(self, directory: Path) -> None:
        """Write files beside the weights (e.g. the backbone's tokenizer)."""

    def _check_inputs(self, prompts: Sequence[str], responses: Sequence) -> None:
        """Family-specific input checks before batching; errors name the input index."""

    def _check_batching(self, batch_size: int | None, max_tokens: int | None = None,
                        max_padding: float | None = None) -> None:
        """Raise ValueError naming the option for a batch size or token budget that is not a positive
        integer, or a padding bound that is not a fraction in [0, 1): the call's arguments (None: use
        the model's) and the model's own attributes."""
        if max_padding is not None and (isinstance(max_padding, bool) or not isinstance(max_padding, (int, float))
                                        or not 0.0 <= max_padding < 1.0):
            raise ValueError(f"max_padding={max_padding!r}: expected a fraction in [0, 1) or None")
        check_positive_int("batch_size", batch_size, allow_none=True)
        check_positive_int("max_tokens", max_tokens, allow_none=True)
        check_positive_int(f"{type(self).__name__}.batch_size", self.batch_size)
        check_positive_int(f"{type(self).__name__}.max_tokens", getattr(self, "max_tokens", None), allow_none=True)

    # What `input_lengths` counts: "characters" for a family without a tokenizer, "tokens" for one
    # that reads a backbone.
    length_unit: ClassVar[str] = "characters"

    def input_lengths(self, prompts: Sequence, responses: Sequence) -> list[int]:
        """The size of each input as the model reads it, uncapped (so an input over `max_input_length`
        shows as longer than it): characters of the prompt and response for a family without a
        tokenizer (`BackboneRewardModel` counts tokens)."""
        return [total_length(p) + total_length(r) for p, r in zip(prompts, responses)]

    @property
    def max_input_length(self) -> int | None:
        """The most `input_lengths` units the model reads of one input before cutting it (None: no
        limit). Longer inputs are cut from the left with a warning, so a caller that must not lose
        text (a server) rejects them instead."""
        return None

    @property
    def scores_independently(self) -> bool:
        """Whether an input's reward is the same whatever else is in the `score` call, so that inputs
        of several calls may be scored together. Not so under a normaliser that uses the call's own
        rewards (`BatchStandardize`) or updates running statistics."""
        return self.normalizer is None or self.normalizer.per_input

    def _token_lengths(self, prompts: Sequence[str], responses: Sequence) -> list[int]:
        """Sizes per input for token-budget batching: `input_lengths`, capped at `max_input_length`."""
        limit = self.max_input_length
        lengths = self.input_lengths(prompts, responses)
        return lengths if limit is None else [min(n, limit) for n in lengths]

    def _batches(self, prompts: Sequence[str], responses: Sequence, batch_size: int | None,
                 max_tokens: int | None, max_padding: float | None = None) -> list[list[int]]:
        """Input indices per batch: sorted by length, then cut by a token budget (and a padding
        bound) or a row count."""
        max_tokens = self.max_tokens if max_tokens is None else max_tokens
        if max_tokens is not None:
            return token_budget_batches(self._token_lengths(prompts, responses), max_tokens, max_padding)
        size = self.batch_size if batch_size is None else batch_size
        order = sorted(range(len(prompts)), key=lambda i: -(total_length(prompts[i]) + total_length(responses[i])))
        return [order[start:start + size] for start in range(0, len(order), size)]

    def data_collator(self, seed: int = 0):
        """What turns training examples of `data_format` into batches for `RewardTrainer`."""
        raise ValueError(f"{type(self).__name__} has no trainable weights: there is nothing to train")

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _shares_prompts(self, share_prompts: bool) -> bool:
        """Whether `score` packs inputs that share a prompt (`BackboneRewardModel` families that can)."""
        return False

    def _packed_batches(self, prompts: Sequence[str], responses: Sequence[str],
                        max_tokens: int | None) -> tuple[list[list[PromptGroup]], list[int]]:
        raise NotImplementedError(f"{type(self).__name__} does not share prompts")

    @torch.inference_mode()
    def score(self, prompts: Sequence[str], responses: Sequence, *, batch_size: int | None = None,
              max_tokens: int | None = None, max_padding: float | None = None, share_prompts: bool = True,
              progress: bool = False, normalize: bool = True, **keywords) -> RewardOutput:
        """Score (prompt, response) pairs; outputs come back in input order.

        Inputs are sorted by length and batched so padding is small: `batch_size` rows per batch,
        or, with `max_tokens` (or the attribute `self.max_tokens`), as many rows as keep
        rows x longest row <= max_tokens (`token_budget_batches`; `batch_size` is then unused),
        and with `max_padding` (a fraction) no batch more than that fraction padding, which matters
        for few inputs of mixed lengths. Batches are padded only to their longest row. With `share_prompts` (default) and a family
        that can (`packs_prompts`: the scalar RM on a decoder), inputs that share a prompt, such
        as a pair's chosen and rejected or best-of-N candidates, are packed into one row that
        reads the prompt once (`prompt_groups`, `Backbone.packed_features`; same rewards up to float
        error), in batches of `max_tokens` (default `PACKED_MAX_TOKENS`) tokens. An empty
        response is valid and gets a score; bad input raises ValueError naming the index.
        `progress=True` shows a tqdm bar over batches. With a normaliser set
        (`set_normalizer`) and `normalize=True`, rewards are normalised over the whole call.
        `batch_size` and `max_tokens` must be integers >= 1 (or None); strings must be valid Unicode
        (a lone surrogate such as "\ud800" cannot be encoded), else ValueError naming the index.

        `keywords` are the family's `input_columns` (one entry per input, e.g. a rules model's
        `references`) and `call_options` (applied to the whole output, e.g. a multi-objective
        model's `weights`); any other keyword is a TypeError.
        """
        self._check_batching(batch_size, max_tokens, max_padding)
        columns, options = self.check_call(prompts, responses, **keywords)
        if not self.reads_conversations:
            prompts, responses = [as_plain(p) for p in prompts], [as_plain(r) for r in responses]
        was_training = self.training
        self.eval()
        try:
            out = self._score_inputs(prompts, responses, columns, batch_size=batch_size, max_tokens=max_tokens,
                                     max_padding=max_padding, share_prompts=share_prompts, progress=progress)
        finally:
            self.train(was_training)
        return self._normalize_output(self._finish(out, **options), normalize)

    def check_call(self, prompts: Sequence, responses: Sequence, **keywords) -> tuple[dict[str, Any], dict[str, Any]]:
        """Every check `score` makes on its inputs and keywords, without scoring: ValueError naming the
        index (or TypeError naming the keyword) for what `score` would refuse. Returns the checked
        (columns, options). A caller that scores many requests together (a server) checks each
        request with it first, so that one bad request cannot fail the others."""
        columns, options = self._split_keywords(keywords)
        validate_inputs(prompts, responses, self.accepts_steps)
        self._check_inputs(prompts, responses)
        options = self._check_options(**options)
        return self._check_columns(columns, len(prompts)), options

    def score_candidates(self, prompt, responses: Sequence, **keywords) -> RewardOutput:
        """Score c candidate responses to one prompt (a string or a conversation, as `score` takes
        it) (best-of-N): `score([prompt] * c, responses, **keywords)`. Families that share prompts
        read the prompt once for the c candidates."""
        if not isinstance(prompt, str) and not is_conversation(prompt):
            raise ValueError(f"prompt is {type(prompt).__name__}, expected a string or a list of "
                             "{'role', 'content'} messages")
        return self.score([prompt] * len(responses), responses, **keywords)

    def _score_inputs(self, prompts: Sequence[str], responses: Sequence, columns: dict[str, Any], *,
                      batch_size: int | None, max_tokens: int | None, share_prompts: bool,
                      progress: bool, max_padding: float | None = None) -> RewardOutput:
        """Every input's output, in input order: packed rows for inputs sharing a prompt (where the
        family can and no per-input column is given), length-sorted batches for the rest."""
        packed, alone = [], list(range(len(prompts)))
        given = {name: values for name, values in columns.items() if values is not None}
        if not given and self._shares_prompts(share_prompts):
            packed, alone = self._packed_batches(prompts, responses, max_tokens)
        single = [[alone[j] for j in idx] for idx in self._batches(
            [prompts[i] for i in alone], [responses[i] for i in alone], batch_size, max_tokens,
            max_padding)] if alone else []
        parts = []
        bar = tqdm(total=len(packed) + len(single), desc="score", unit="batch", disable=not progress)
        for chunk in packed:
            parts.append(([i for g in chunk for i in g.indices], self._score_packed(chunk)))
            bar.update()
        for idx in single:
            sliced = {name: [values[i] for i in idx] for name, values in given.items()}
            parts.append((idx, self._score_batch([prompts[i] for i in idx], [responses[i] for i in idx], **sliced)))
            bar.update()
        bar.close()
        return gather_outputs(parts, len(prompts))

    def set_normalizer(self, normalizer) -> "RewardModel":
        """Normalise what `score` returns (a `nexus.normalize.Normalizer`, its config dict, or None).

        `compare` and `calibrate` keep using raw rewards; `save_pretrained` stores the normaliser
        (statistics included) in config.json, so `nexus.load` applies it again.
        """
        from nexus.normalize import as_normalizer

        self.normalizer = as_normalizer(normalizer)
        return self

    def _normalize_output(self, out: RewardOutput, normalize: bool = True) -> RewardOutput:
        return self.normalizer.apply(out) if normalize and self.normalizer is not None else out

    def as_reward_func(self, columns: dict[str, str] | None = None, *, name: str | None = None,
                       normalize: bool = True, render_messages=None):
        """This RM as a TRL GRPO reward function `(prompts, completions, **kwargs) -> list[float]`.

        `columns` maps extra `score` keywords to dataset columns TRL passes as keyword arguments,
        e.g. `{"references": "answer"}` for a rules RM. See `nexus.rl.reward_func`.
        """
        from nexus.rl import reward_func

        return reward_func(self, columns, name=name, normalize=normalize, render_messages=render_messages)

    def preference_logits(self, out_a: RewardOutput, out_b: RewardOutput) -> Tensor:
        """'b': the uncalibrated log-odds that a is preferred, from two `score` outputs.

        Bradley-Terry: r_a - r_b. Families with a richer predictive distribution
        (the ensemble integrates its members' Gaussians) override this.
        """
        return out_a.rewards - out_b.rewards

    def preference_probability(self, out_a: RewardOutput, out_b: RewardOutput) -> Tensor:
        """'b': P(a preferred to b) = sigmoid(logits / temperature)."""
        return torch.sigmoid(self.preference_logits(out_a, out_b) / self.temperature.cpu())

    def compare(self, prompts: Sequence[str], responses_a: Sequence, responses_b: Sequence, **keywords) -> Tensor:
        """'b': P(a preferred to b); for the scalar RM sigmoid((r_a - r_b) / T), Bradley-Terry.

        a and b are scored in one `score` call on raw rewards (so a family whose reward depends on
        the call, such as a hybrid's per-call standardisation, sees both sides together, and a pair
        sharing its prompt is read once); `keywords` as in `score`, per-input columns given once
        for the n pairs."""
        validate_inputs(prompts, responses_a, self.accepts_steps)
        validate_inputs(prompts, responses_b, self.accepts_steps)
        columns, options = self._split_keywords(keywords)
        RewardModel._check_columns(self, columns, len(prompts))  # lengths here; the family's checks in `score`
        doubled = {name: None if values is None else [*values, *values] for name, values in columns.items()}
        out = self.score([*prompts, *prompts], [*responses_a, *responses_b], normalize=False, **doubled, **options)
        n = len(prompts)
        return self.preference_probability(out.select(slice(0, n)), out.select(slice(n, 2 * n)))

    def calibrate(self, prompts: Sequence[str], chosen: Sequence, rejected: Sequence) -> float:
        """Fit `temperature` on validation pairs (chosen preferred) by likelihood; return it.

        Temperature scaling (Guo et al. 2017): one scalar T divides the preference log-odds,
        so accuracy and ranking are unchanged and only the confidence moves.

        Needs at least `MIN_CALIBRATION_PAIRS` (10) distinct (prompt, chosen, rejected) pairs, and as
        many of them with a preference log-odds other than 0 (pairs the model ties say nothing
        about T); else ValueError (`UninformativePairsError` for the second) giving both counts, and T
        is left as it was. A fitted T on a search bound warns (see `fit_temperature`).
        """
        from nexus.calibration import MIN_CALIBRATION_PAIRS, UninformativePairsError, fit_temperature, informative

        validate_inputs(prompts, chosen, self.accepts_steps)
        validate_inputs(prompts, rejected, self.accepts_steps)
        first: dict[tuple, int] = {}  # each distinct pair -> its first index
        for i, key in enumerate(zip(map(as_key, prompts), map(as_key, chosen), map(as_key, rejected))):
            first.setdefault(key, i)
        if len(first) < MIN_CALIBRATION_PAIRS:
            raise ValueError(f"calibrate: {len(first)} distinct (prompt, chosen, rejected) pairs given "
                             f"({len(prompts)} in all); fitting a temperature needs at least {MIN_CALIBRATION_PAIRS}")
        logits = self.preference_logits(self.score(prompts, chosen, normalize=False),
                                        self.score(prompts, rejected, normalize=False))
        useful = int(informative(logits.double().numpy()[list(first.values())]).sum())
        if useful < MIN_CALIBRATION_PAIRS:
            raise UninformativePairsError(
                f"calibrate: {useful} of the {len(first)} distinct pairs get a reward difference other than 0 "
                f"(the model ties the other {len(first) - useful}); fitting a temperature needs at least "
                f"{MIN_CALIBRATION_PAIRS}")
        self.temperature.fill_(fit_temperature(logits))
        return float(self.temperature)

    def save_pretrained(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write config.json + model.safetensors (+ the family's `saved_entries`) to the directory `path`.

        `path` may be new or an empty directory; an existing nexus checkpoint is replaced only with
        `overwrite=True`; anything else (a file, a link, a folder with other content) raises
        FileExistsError and is left untouched. The checkpoint is written to a `.{name}.tmp-<hex>`
        sibling, fsynced file by file, renamed into place and the parent directory fsynced, so a
        reader (or a crash) sees the old checkpoint or the new one, whole. Leftover `.{name}.tmp-*`
        and `.{name}.old-*` folders of killed saves of that name are then removed. Rules in
        `nexus.checkpoint`.
        """
        path = Path(path)
        target = Path(os.path.abspath(path))  # "." or "x/.." name a real folder and parent
        checkpoint.check_save_target(target, type(self), overwrite)
        target.parent.mkdir(parents=True, exist_ok=True)
        with checkpoint.staging_dir(target) as tmp:
            # Constructor arguments at the top level; state set after construction (the reward
            # normaliser) in its own section, so loading never passes it to a constructor.
            config = {"model_type": self.model_type, **self.config_dict(), "saved_state": self._saved_state()}
            (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
            save_model(self, str(tmp / WEIGHTS_NAME))
            self._save_extra(tmp)
            checkpoint.check_written(tmp, type(self))
            checkpoint.commit(tmp, target, type(self), overwrite)
        checkpoint.remove_leftovers(target, type(self))
        return path

    def export_hf(self, path: str | os.PathLike) -> Path:
        """Write this RM as a transformers `AutoModelForSequenceClassification` checkpoint, the format
        TRL, OpenRLHF and RewardBench load (`nexus.interop.export_hf`: which families can, and why)."""
        from nexus.interop import export_hf

        return export_hf(self, path)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "RewardModel":
        """Load a checkpoint written by `save_pretrained` (safetensors, never pickle, no checkpoint code).

        Before the model is built, the one its config describes is built on the `meta` device and
        compared with model.safetensors' header (`nexus.checkpoint.check_weights`): shape, name or
        size disagreements, or more parameters than `NEXUS_MAX_PARAMS`, raise ValueError first.
        """
        path = Path(path)
        config = read_config(path)
        state = split_saved_state(config)
        if checkpoint.building_skeleton():  # inside another checkpoint's check: shapes only, no weights
            return cls._from_config(config, path)
        checkpoint.check_weights(lambda: cls._from_config(config, path), path / WEIGHTS_NAME, path)
        model = cls._from_config(config, path)
        load_model(model, str(path / WEIGHTS_NAME), strict=True)
        model.set_normalizer(state.get("normalizer"))
        return model.to(device).eval()

    def _saved_state(self) -> dict:
        """What config.json's "saved_state" holds: state set after construction (not the
        temperature, a buffer saved with the weights)."""
        return {"normalizer": None if self.normalizer is None else self.normalizer.to_config()}


# Keys of config.json that are saved state rather than constructor arguments. Checkpoints written
# before "saved_state" existed keep "normalizer" at the top level.
SAVED_STATE_KEYS = ("normalizer",)


def split_saved_state(config: dict) -> dict:
    """Remove the saved state from `config` (in place) and return it, from "saved_state" or, for
    older checkpoints, from the top level; what remains is the constructor arguments."""
    state = {key: config.pop(key) for key in SAVED_STATE_KEYS if key in config}
    saved = config.pop("saved_state", None) or {}
    if not isinstance(saved, dict):
        raise ValueError(f"config.json: \"saved_state\" must be a JSON object, got {type(saved).__name__}")
    return {**state, **saved}


def read_config(path: Path) -> dict:
    """config.json of a checkpoint directory, with errors that say what is missing."""
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory {path} does not exist")
    file = path / CONFIG_NAME
    if not file.is_file():
        raise FileNotFoundError(f"{path} has no {CONFIG_NAME}: not a nexus checkpoint (written by save_pretrained)")
    config = read_json_object(file)
    if "model_type" not in config:
        raise ValueError(f"{file}: missing field 'model_type'")
    if not (path / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(f"{path} has no {WEIGHTS_NAME}")
    return config

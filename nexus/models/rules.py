"""Rule-based reward model: a weighted sum of registered reward functions.

r(x, y) = sum_i w_i * f_i(x, y, ref), with each f_i from `nexus.rule_functions.RULES` and w_i > 0.
Nothing is learned: the checkpoint is config.json (functions, parameters, weights) plus the
base class's temperature buffer. Legend: b batch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from tqdm.auto import tqdm

from nexus.base import RewardModel
from nexus.outputs import RewardOutput
from nexus.rule_functions import RULES, Rule

DEFAULT_FUNCTIONS = ("length", "repetition", "toxicity")


def parse_functions(functions: Sequence[str | Mapping]) -> list[tuple[Rule, dict]]:
    """(rule, parameters) per entry: a name, or a dict {"name": ..., **parameters}.

    Raises:
        ValueError: naming `functions[i]` for an unknown name (listing the known ones), an unknown
            parameter (listing the accepted ones) or a parameter value the rule rejects.
    """
    if isinstance(functions, (str, Mapping)) or not isinstance(functions, Sequence) or not functions:
        raise ValueError(f"functions must be a non-empty list of names or {{'name': ...}} dicts, got {functions!r}")
    parsed = []
    for i, entry in enumerate(functions):
        params = dict(entry) if isinstance(entry, Mapping) else {"name": entry}
        name = params.pop("name", None)
        if name not in RULES:
            raise ValueError(f"functions[{i}]: unknown rule function {name!r}; known: {', '.join(sorted(RULES))}")
        rule = RULES[name]
        accepted = rule.params()
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise ValueError(f"functions[{i}] ({name}): unknown parameter {unknown[0]!r}; "
                             f"accepted: {', '.join(sorted(accepted)) or 'none'}")
        if rule.check is not None:
            try:
                rule.check({**accepted, **params})
            except ValueError as err:
                raise ValueError(f"functions[{i}] ({name}): {err}") from err
        parsed.append((rule, params))
    return parsed


def parse_weights(weights: Sequence[float] | None, n_functions: int) -> list[float]:
    """One finite weight > 0 per function (default all 1); errors name `weights[i]`."""
    if weights is None:
        return [1.0] * n_functions
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise ValueError(f"weights must be a list of numbers, got {type(weights).__name__}")
    if len(weights) != n_functions:
        raise ValueError(f"weights has {len(weights)} entries but functions has {n_functions}: "
                         "give one weight per function")
    for i, w in enumerate(weights):
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
            raise ValueError(f"weights[{i}] = {w!r}: every weight must be a finite number > 0 "
                             "(to penalise, use a penalty function such as toxicity)")
    return [float(w) for w in weights]


def _labels(specs: list[tuple[Rule, dict]]) -> list[str]:
    """Names of the functions, with the index appended where a name is used twice."""
    names = [rule.name for rule, _ in specs]
    return [name if names.count(name) == 1 else f"{name}[{i}]" for i, name in enumerate(names)]


class RulesRewardModel(RewardModel):
    """A weighted sum of rule functions behind `score`.

    `score(prompts, responses, references=...)` returns `rewards: 'b'` and, in `extras`, each
    function's value 'b' under its name. Functions that need a reference (math_correct,
    code_tests, bleu, rouge_l) read `references[i]`: a string (an integer is read as its
    string), or a dict from function name to string when they need different ones.
    `uncertainty`, `step_rewards` and `explanations` are None.

    Args:
        functions: names or {"name": ..., **parameters} dicts, e.g. `["repetition",
            {"name": "length", "low": 5, "high": 50}]`.
        weights: one positive weight per function (default 1 each).
        batch_size: kept for the common interface; rules score one input at a time.
        backbone: ignored, so code that builds every family alike (`instantiate(model_cfg,
            backbone=...)`) can pass one; a rules model has no use for one.
    """

    model_type = "rules"
    data_format = "none"  # nothing to train
    input_columns = ("references",)

    def __init__(self, functions: Sequence[str | Mapping] = DEFAULT_FUNCTIONS,
                 weights: Sequence[float] | None = None, batch_size: int = 64, backbone: Any = None):
        super().__init__(batch_size=batch_size)
        self.specs = parse_functions(functions)
        self.weights = parse_weights(weights, len(self.specs))
        self.labels = _labels(self.specs)

    @property
    def device(self) -> torch.device:
        return self.temperature.device  # no parameters: the base class's buffer says where it is

    def data_collator(self, seed: int = 0):
        raise ValueError("a rules model has no trainable weights: there is nothing to train")

    @property
    def reference_labels(self) -> list[str]:
        """The functions that read a reference."""
        return [label for label, (rule, _) in zip(self.labels, self.specs) if rule.needs_reference]

    def check_references(self, references: Sequence | None, n: int) -> list[dict[str, str] | None]:
        """Per input, the reference string of each function that needs one (None: no function does).

        Raises:
            ValueError: references missing, given though no function reads them, of the wrong
                length, or an entry of the wrong type or missing a function's key (names the index).
        """
        needed = self.reference_labels
        if references is None:
            if needed:
                raise ValueError(f"references missing: functions {', '.join(needed)} read a reference; pass "
                                 "score(..., references=[...]) with one per response")
            return [None] * n
        if not needed:
            raise ValueError(f"references given but none of the functions ({', '.join(self.labels)}) reads one")
        if isinstance(references, (str, bytes, Mapping)) or not isinstance(references, Sequence):
            raise ValueError(f"references must be a list with one entry per response, got {type(references).__name__}")
        if len(references) != n:
            raise ValueError(f"references has {len(references)} entries but there are {n} responses")
        return [self._reference_entry(ref, i, needed) for i, ref in enumerate(references)]

    @staticmethod
    def _reference_entry(ref: Any, i: int, needed: list[str]) -> dict[str, str]:
        if isinstance(ref, int) and not isinstance(ref, bool):
            ref = str(ref)
        if isinstance(ref, str):
            return dict.fromkeys(needed, ref)
        if not isinstance(ref, Mapping):
            raise ValueError(f"references[{i}] is {type(ref).__name__}, expected str, int or a dict "
                             f"from function name ({', '.join(needed)}) to str")
        for label in needed:
            if not isinstance(ref.get(label), str):
                got = "missing" if label not in ref else type(ref[label]).__name__
                raise ValueError(f"references[{i}][{label!r}] is {got}, expected str")
        return {label: ref[label] for label in needed}

    def _evaluate(self, prompts: Sequence[str], responses: Sequence[str], refs: list,
                  progress: bool = False) -> RewardOutput:
        values = torch.zeros(len(self.specs), len(prompts), dtype=torch.float64)
        for i in tqdm(range(len(prompts)), desc="rules", unit="input", disable=not progress):
            for k, (label, (rule, params)) in enumerate(zip(self.labels, self.specs)):
                reference = refs[i][label] if rule.needs_reference else None
                try:
                    values[k, i] = rule.fn(prompts[i], responses[i], reference, **params)
                except ValueError as err:
                    raise ValueError(f"input {i}, function {label}: {err}") from err
        rewards = torch.tensor(self.weights, dtype=torch.float64) @ values
        extras = {label: values[k].float() for k, label in enumerate(self.labels)}
        return RewardOutput(rewards=rewards.float(), extras=extras)

    def _check_columns(self, columns: dict, n: int) -> dict:
        return {"references": self.check_references(columns.get("references"), n)}

    def _score_inputs(self, prompts: Sequence[str], responses: Sequence, columns: dict, *, progress: bool,
                      **batching) -> RewardOutput:
        """Rewards 'b' = sum_i w_i f_i, in input order. Rules read each input on its own, so the
        batching options are checked like every family's and change nothing else."""
        return self._evaluate(prompts, responses, columns["references"], progress)

    def _score_batch(self, prompts: list[str], responses: list[str], references=None) -> RewardOutput:
        return self._evaluate(prompts, responses, self.check_references(references, len(prompts)))

    def config_dict(self) -> dict:
        functions = [{"name": rule.name, **params} for rule, params in self.specs]
        return {"functions": functions, "weights": self.weights, "batch_size": self.batch_size}

    @classmethod
    def _from_config(cls, config: dict, directory: Path) -> "RulesRewardModel":
        return cls(functions=config["functions"], weights=config["weights"], batch_size=config["batch_size"])

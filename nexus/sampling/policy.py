"""Policies: `generate(prompts, n, temperature, seed) -> list[list[str]]`.

`complete` continues partial solutions (a prompt plus the first steps of a response); it is
what Math-Shepherd labelling needs, and `generate` is `complete` from an empty prefix.
`HFPolicy` samples any local causal LM (batched, left padding, KV cache, progress bar); a task
package may bring its own (`nexus.tasks.arithmetic.ArithmeticPolicy`, a solver with a known error rate).
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from nexus.backbones.text import PLAIN_TEMPLATE


class Policy(ABC):
    """Samples responses. Subclasses implement `complete` and `spec` (the cache key).

    `name` says which policy it is (in reports), and `temperature` is the sampling temperature a
    caller uses when it gives none (a policy config carries it with the policy's other settings).
    """

    name: str = "policy"
    temperature: float = 1.0

    @abstractmethod
    def complete(self, prompts: Sequence[str], prefixes: Sequence[str], n: int, temperature: float = 1.0,
                 seed: int = 0) -> list[list[str]]:
        """Per prompt, `n` full responses that start with its prefix ("" for none)."""

    @abstractmethod
    def spec(self) -> dict:
        """What identifies the policy's outputs (JSON), for caching generations."""

    def generate(self, prompts: Sequence[str], n: int, temperature: float = 1.0, seed: int = 0) -> list[list[str]]:
        """Per prompt, `n` sampled responses."""
        return self.complete(prompts, [""] * len(prompts), n, temperature, seed)


def _check(prompts: Sequence[str], prefixes: Sequence[str], n: int, temperature: float) -> None:
    if len(prompts) != len(prefixes):
        raise ValueError(f"{len(prompts)} prompts but {len(prefixes)} prefixes")
    if n < 1 or temperature < 0:
        raise ValueError(f"n={n} must be >= 1 and temperature={temperature} >= 0")


class StopOnText:
    """Stop each sequence once its *generated* text contains a stop string.

    transformers' own `stop_strings` also match across the prompt's end, so a chat prompt ending
    in a newline stops a reply that opens with a code fence after one token; this looks only at
    the tokens after `start`. Returns a per-sequence 'b' bool tensor, as stopping criteria may.
    """

    def __init__(self, tokenizer, stops: Sequence[str], start: int):
        self.tokenizer, self.stops, self.start = tokenizer, list(stops), start

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.start:], skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stops) for t in texts], device=input_ids.device)


class HFPolicy(Policy):
    """A causal LM sampled with `model.generate` (KV cache, left padding, batches): a packaged name,
    a local directory or a hub id (at `revision`, weights in `dtype`; see `nexus.backbones.hub`).

    Decoders without a chat template read `PLAIN_TEMPLATE` (prompt, blank line, response), the
    format `arith-lm` was trained on; chat models get their template with a generation prompt.
    """

    def __init__(self, name_or_path: str, max_new_tokens: int = 64, batch_size: int = 64,
                 device: str | torch.device = "cpu", trust_remote_code: bool = False, template: str = "auto",
                 stop: Sequence[str] = (), temperature: float = 1.0, revision: str | None = None,
                 dtype: str | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from nexus.backbones import dtype_kwargs, resolve_backbone_dir
        from nexus.backbones.hub import torch_dtype

        directory = resolve_backbone_dir(name_or_path, revision)  # a packaged name, a local directory or a hub id
        if directory is None:
            raise ValueError(f"{name_or_path!r} is a random tiny config; a policy needs a trained LM")
        from nexus.checkpoint import checked_hf_config

        # Unknown model types (unless trust_remote_code) and configs that disagree with the size of
        # the weight files are refused before anything is allocated.
        config = checked_hf_config(directory, AutoModelForCausalLM, trust_remote_code)
        kwargs = dict(local_files_only=True, trust_remote_code=trust_remote_code)
        self.model = AutoModelForCausalLM.from_pretrained(directory, config=config, **dtype_kwargs(torch_dtype(dtype)),
                                                          **kwargs).to(device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(directory, **kwargs)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if template not in ("auto", "chat", "plain", "raw"):
            raise ValueError(f"template={template!r}: expected 'auto', 'chat', 'plain' or 'raw'")
        if template == "auto":
            template = "chat" if getattr(self.tokenizer, "chat_template", None) else "plain"
        self.name, self.max_new_tokens, self.batch_size = name_or_path, max_new_tokens, batch_size
        self.template, self.temperature = template, temperature
        # Stop strings end a sample early (e.g. HumanEval's "\ndef "); the text after them is
        # still returned, as far as it was generated, and cut by the caller's own rule.
        self.stop = list(stop)

    def spec(self) -> dict:
        weights = sorted(p.name for p in Path(self.model.name_or_path).glob("*.safetensors"))
        return {"policy": "hf", "name": self.name, "path": str(self.model.name_or_path), "weights": weights,
                "max_new_tokens": self.max_new_tokens, "template": self.template,
                **({"stop": self.stop, "stop_on": "generated"} if self.stop else {})}

    def _context(self, prompt: str, prefix: str) -> str:
        """chat: the tokenizer's chat template; plain: `PLAIN_TEMPLATE`; raw: the prompt continued
        as it is (code completion, e.g. HumanEval)."""
        if self.template == "chat":
            messages = [{"role": "user", "content": prompt}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + prefix
        if self.template == "raw":
            return prompt + prefix
        return PLAIN_TEMPLATE.format(prompt=prompt, response=prefix)

    @torch.inference_mode()
    def complete(self, prompts, prefixes, n, temperature=1.0, seed=0):
        _check(prompts, prefixes, n, temperature)
        contexts = [self._context(p, x) for p, x in zip(prompts, prefixes)]
        per_batch = max(1, self.batch_size // n)  # contexts per generate call; each yields n samples
        out: list[list[str]] = []
        for start in tqdm(range(0, len(contexts), per_batch), desc="generate", unit="batch",
                          disable=len(contexts) <= per_batch):
            chunk = contexts[start:start + per_batch]
            batch = self.tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            batch = {k: v.to(self.model.device) for k, v in batch.items()}
            torch.manual_seed(seed * 1_000_003 + start)  # reproducible, and independent of batch size per call
            sample = temperature > 0
            stop = {"stopping_criteria": [StopOnText(self.tokenizer, self.stop, batch["input_ids"].shape[1])]} \
                if self.stop else {}
            generated = self.model.generate(
                **batch, do_sample=sample, temperature=temperature if sample else None, top_p=None, top_k=None,
                num_return_sequences=n, max_new_tokens=self.max_new_tokens, use_cache=True,
                pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id, **stop)
            texts = self.tokenizer.batch_decode(generated[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
            for j in range(len(chunk)):
                prefix = prefixes[start + j]
                out.append([prefix + t for t in texts[j * n:(j + 1) * n]])
        return out


def generate_cached(policy: Policy, prompts: Sequence[str], n: int, temperature: float | None = None, seed: int = 0,
                    cache_dir: str | os.PathLike | None = None) -> list[list[str]]:
    """`policy.generate`, stored on disk under a key of (policy spec, prompts, n, temperature, seed),
    so a rerun with the same configuration reads the file instead of sampling again. Temperature
    None: the policy's own."""
    from nexus.backbones.packaged import cache_dir as default_cache

    temperature = policy.temperature if temperature is None else temperature
    payload = json.dumps({"policy": policy.spec(), "prompts": list(prompts), "n": n,
                          "temperature": temperature, "seed": seed}, sort_keys=True)
    key = hashlib.sha256(payload.encode()).hexdigest()[:16]
    path = Path(cache_dir or default_cache() / "generations") / f"{key}.json"
    if path.is_file():
        return json.loads(path.read_text())["samples"]
    samples = policy.generate(prompts, n, temperature, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"config": json.loads(payload), "samples": samples}))
    os.replace(tmp, path)
    return samples

"""`arith-lm`: the small SFT language model of the arithmetic task.

Reward models start from a supervised LM in real RLHF (Ouyang et al. 2022). Here a
2-layer, 128-wide byte-level GPT-2 learns correct step-by-step solutions; its
features already separate right from wrong steps, so RMs fine-tuned from it learn
in minutes what a random init does not. Trained once per config and cached.

Command: `python -m nexus.tasks.arithmetic.task_lm [--max-steps N]` prints the directory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from nexus.backbones.backbone import PLAIN_TEMPLATE
from nexus.backbones.packaged import build_once, cache_dir
from nexus.backbones.tokenizer import build_byte_tokenizer
from nexus.tasks.arithmetic.problems import SPLITS, correct_solutions

FORMAT_VERSION = 2  # bump when the recipe changes, so old caches are not reused


@dataclass(frozen=True)
class ArithLMConfig:
    """Architecture and training recipe; every field is part of the cache key."""

    split: str = "id"
    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 256
    n_examples: int = 200_000
    max_steps: int = 1500
    batch_size: int = 64
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    seed: int = 0

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"ArithLMConfig.split={self.split!r}: expected one of {sorted(SPLITS)}")

    def key(self) -> str:
        payload = json.dumps({**asdict(self), "format": FORMAT_VERSION, "task": repr(SPLITS[self.split])})
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


class _SolutionCollator:
    """(prompt, response) -> LM batch in the RM's input format (`PLAIN_TEMPLATE` + eos).

    The loss covers the prompt too, unlike chat SFT: the prompt's log-likelihood is
    then meaningful, which `Backbone(lm_logprobs=True)` reads over the whole input.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, pairs):
        tok = self.tokenizer
        texts = [PLAIN_TEMPLATE.format(prompt=p, response=r) for p, r in pairs]
        rows = [ids + [tok.eos_token_id] for ids in tok(texts)["input_ids"]]
        width = max(map(len, rows))
        pad = lambda seq, value: seq + [value] * (width - len(seq))  # noqa: E731
        return {
            "input_ids": torch.tensor([pad(r, tok.pad_token_id) for r in rows]),
            "attention_mask": torch.tensor([pad([1] * len(r), 0) for r in rows]),
            "labels": torch.tensor([pad(r, -100) for r in rows]),
        }


def train_arith_lm(cfg: ArithLMConfig, out: Path) -> Path:
    """Train the task LM and save it (HF directory: config, tokenizer, safetensors) to `out`."""
    tokenizer = build_byte_tokenizer(cfg.n_positions)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_layer=cfg.n_layer, n_embd=cfg.n_embd, n_head=cfg.n_head,
        n_positions=cfg.n_positions, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    torch.manual_seed(cfg.seed)
    model = GPT2LMHeadModel(config)
    data = correct_solutions(cfg.n_examples, seed=cfg.seed, cfg=SPLITS[cfg.split])
    args = TrainingArguments(
        output_dir=str(out / "_trainer"), max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_steps, lr_scheduler_type="cosine",
        weight_decay=0.1, logging_steps=max(cfg.max_steps // 10, 1), save_strategy="no",
        report_to="none", seed=cfg.seed, use_cpu=not torch.cuda.is_available(),
        remove_unused_columns=False, dataloader_drop_last=True,
    )
    Trainer(model=model, args=args, train_dataset=data, data_collator=_SolutionCollator(tokenizer)).train()
    shutil.rmtree(out / "_trainer", ignore_errors=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "nexus_arith_lm.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    return out


def arith_lm_dir(cfg: ArithLMConfig = ArithLMConfig()) -> Path:
    """The cached task LM for `cfg`, trained first (a few minutes on 2 cores) if missing."""
    target = cache_dir() / f"arith-lm-{cfg.key()}"
    if (target / "config.json").is_file():
        return target
    message = f"[nexus] training the arithmetic task LM once ({cfg.max_steps} steps); cached at {target}"
    return build_once(target, lambda scratch: train_arith_lm(cfg, scratch / "model"), message)


@torch.inference_mode()
def loglik_accuracy(model_dir: Path, split: str = "id", n: int = 500, seed: int = 12345) -> float:
    """How often the LM gives the correct solution a higher log-likelihood than the corrupted one.

    The prompt is shared by both sides of a pair, so whole-sequence log-likelihoods compare
    the responses alone.
    """
    from nexus.backbones import load_backbone
    from nexus.tasks.arithmetic.problems import generate

    backbone = load_backbone(str(model_dir), lm_logprobs=True).eval()
    pairs = generate(n, seed=seed, cfg=SPLITS[split])["pairwise"]
    prompts = [p.prompt for p in pairs]
    batch = backbone.encode(prompts + prompts, [p.chosen for p in pairs] + [p.rejected for p in pairs])
    mean_logp = backbone(**batch)[:, -2]
    total = mean_logp * (batch["attention_mask"].sum(-1) - 1)  # mean -> sum over the tokens read
    return (total[:n] > total[n:]).float().mean().item()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = ArithLMConfig()
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--eval-pairs", type=int, default=0,
                        help="also print the log-likelihood accuracy on this many pairs of each split")
    args = vars(parser.parse_args(argv))
    n_eval = args.pop("eval_pairs")
    path = arith_lm_dir(ArithLMConfig(**args))
    for split in SPLITS if n_eval else ():
        print(f"log-likelihood accuracy on {n_eval} {split} pairs: {loglik_accuracy(path, split, n_eval):.4f}")
    print(path)


if __name__ == "__main__":
    main()

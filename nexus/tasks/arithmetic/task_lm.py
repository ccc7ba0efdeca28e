"""`arith-lm`: the small SFT language model of the arithmetic task.

Reward models start from a supervised LM in real RLHF (Ouyang et al. 2022). Here a
2-layer, 128-wide byte-level GPT-2 learns correct step-by-step solutions; its
features already separate right from wrong steps, so RMs fine-tuned from it learn
in minutes what a random init does not. Trained once per config and cached.

Two of them:

- `arith-lm`: the original one, 2 layers, trained on one-digit chains (`split`), in minutes.
- `arith-lm-ladder` (`LADDER`): 3 layers, 128 wide, trained on all three levels of the ladder
  (`problems.LEVELS`), in the seen prompt wordings only, on the "lm" partition's problems only
  (disjoint from every RM training and evaluation problem), with the loss on the solution only.
  Training it takes longer than a run should wait, so its weights ship in the repository
  (`SHIPPED_DIR`, safetensors, checked against `SHIPPED_SHA256` when loaded); the command that
  reproduces them is `python -m nexus.tasks.arithmetic.task_lm --ladder --eval-pairs 500`.

Command: `python -m nexus.tasks.arithmetic.task_lm [--max-steps N]` prints the directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import random
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from nexus.backbones.text import PLAIN_TEMPLATE
from nexus.backbones.names import register_names
from nexus.backbones.packaged import build_once, cache_dir
from nexus.backbones.tokenizer import build_byte_tokenizer
from nexus.tasks.arithmetic.problems import LEVELS, SPLITS, correct_solutions
from nexus.tasks.arithmetic.templates import SEEN_TEMPLATES, UNSEEN_TEMPLATES, check_templates

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
    # The ladder's fields (the defaults train the original one-split model):
    levels: tuple[str, ...] = ()      # splits mixed in equal shares; () trains on `split` alone
    templates: tuple[str, ...] = ("bare",)
    partition: str | None = None      # "lm": only problems no RM trains or is evaluated on
    loss_on: str = "all"              # "all" tokens, or the "response" only

    def __post_init__(self):
        for i, name in enumerate(self.levels or (self.split,)):
            if name not in SPLITS:
                raise ValueError(f"ArithLMConfig.levels[{i}]={name!r}: expected one of {sorted(SPLITS)}")
        object.__setattr__(self, "levels", tuple(self.levels))
        object.__setattr__(self, "templates", check_templates(tuple(self.templates), "ArithLMConfig.templates"))
        if self.loss_on not in ("all", "response"):
            raise ValueError(f"ArithLMConfig.loss_on={self.loss_on!r}: expected 'all' or 'response'")

    def task_configs(self) -> list:
        """The task config of every split it trains on, with its wordings and partition."""
        return [dataclasses.replace(SPLITS[name], templates=self.templates, partition=self.partition)
                for name in self.levels or (self.split,)]

    def key(self) -> str:
        fields = asdict(self)
        if not self.levels and self.templates == ("bare",) and self.partition is None and self.loss_on == "all":
            # the original model's key, so caches of it stay valid
            fields = {k: fields[k] for k in list(fields)[:11]}
            task = SPLITS[self.split]
            legacy = ", ".join(f"{k}={getattr(task, k)!r}" for k in ("digits", "min_steps", "max_steps", "operators",
                                                                       "error_offset_min", "error_offset_max"))
            payload = json.dumps({**fields, "format": FORMAT_VERSION, "task": f"ArithmeticConfig({legacy})"})
        else:
            payload = json.dumps({**fields, "format": FORMAT_VERSION, "task": repr(self.task_configs())})
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


# The ladder's task LM: one layer deeper than the original, trained twice as long on all three levels.
LADDER = ArithLMConfig(n_layer=3, n_embd=128, n_head=4, n_examples=200_000, max_steps=2000, batch_size=64,
                       learning_rate=2e-3, warmup_steps=150, levels=LEVELS, templates=SEEN_TEMPLATES,
                       partition="lm", loss_on="response")


class _SolutionCollator:
    """(prompt, response) -> LM batch in the RM's input format (`PLAIN_TEMPLATE` + eos).

    The loss covers the prompt too, unlike chat SFT: the prompt's log-likelihood is
    then meaningful, which `Backbone(lm_logprobs=True)` reads over the whole input.
    """

    def __init__(self, tokenizer, loss_on: str = "all"):
        self.tokenizer, self.loss_on = tokenizer, loss_on

    def __call__(self, pairs):
        tok = self.tokenizer
        texts = [PLAIN_TEMPLATE.format(prompt=p, response=r) for p, r in pairs]
        rows = [ids + [tok.eos_token_id] for ids in tok(texts)["input_ids"]]
        # With loss_on="response" the prompt and separator are read but not predicted: the prompt's
        # digits are random, so predicting them only spends capacity the solution needs.
        heads = ([len(ids) for ids in tok([PLAIN_TEMPLATE.format(prompt=p, response="") for p, _ in pairs])["input_ids"]]
                 if self.loss_on == "response" else [0] * len(rows))
        width = max(map(len, rows))
        pad = lambda seq, value: seq + [value] * (width - len(seq))  # noqa: E731
        return {
            "input_ids": torch.tensor([pad(r, tok.pad_token_id) for r in rows]),
            "attention_mask": torch.tensor([pad([1] * len(r), 0) for r in rows]),
            "labels": torch.tensor([pad([-100] * h + r[h:], -100) for r, h in zip(rows, heads)]),
        }


def training_solutions(cfg: ArithLMConfig) -> list[tuple[str, str]]:
    """(prompt, solution) pairs the LM trains on: `n_examples` split evenly over its levels, shuffled."""
    configs = cfg.task_configs()
    data = []
    for i, task in enumerate(configs):
        share = cfg.n_examples // len(configs) + (i < cfg.n_examples % len(configs))
        data += correct_solutions(share, seed=cfg.seed + 1000 * i if cfg.levels else cfg.seed, cfg=task)
    if cfg.levels:
        random.Random(f"nexus.task_lm:{cfg.seed}").shuffle(data)
    return data


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
    data = training_solutions(cfg)
    args = TrainingArguments(
        output_dir=str(out / "_trainer"), max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_steps, lr_scheduler_type="cosine",
        weight_decay=0.1, logging_steps=max(cfg.max_steps // 10, 1), save_strategy="no",
        report_to="none", seed=cfg.seed, use_cpu=not torch.cuda.is_available(),
        remove_unused_columns=False, dataloader_drop_last=True,
    )
    Trainer(model=model, args=args, train_dataset=data, data_collator=_SolutionCollator(tokenizer, cfg.loss_on)).train()
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


# The ladder LM's weights as shipped in the repository, and their SHA-256 (checked at every load,
# so a corrupted or swapped file is refused rather than silently changing every result).
SHIPPED_DIR = Path(__file__).resolve().parent / "arith_lm_ladder"
SHIPPED_SHA256 = "885096062500c45d64aea8ade7707cb82ea480cfe200a4c8aac955c6fb489bbd"
SHIPPED_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "nexus_arith_lm.json")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ladder_lm_dir() -> Path:
    """`arith-lm-ladder`: the shipped weights once their hash checks out; trained from `LADDER`
    (and cached) where the repository holds no weights."""
    weights = SHIPPED_DIR / "model.safetensors"
    if not weights.is_file() or SHIPPED_SHA256 is None:
        return arith_lm_dir(LADDER)
    digest = file_sha256(weights)
    if digest != SHIPPED_SHA256:
        raise ValueError(f"{weights}: SHA-256 {digest} is not the shipped {SHIPPED_SHA256}; restore the file "
                         "(git checkout) or retrain it: python -m nexus.tasks.arithmetic.task_lm --ladder --ship")
    return SHIPPED_DIR


def ship(trained: Path) -> str:
    """Copy a trained ladder LM's files into `SHIPPED_DIR`; return the weights' SHA-256 to record
    as `SHIPPED_SHA256`."""
    SHIPPED_DIR.mkdir(exist_ok=True)
    for name in SHIPPED_FILES:
        if (trained / name).is_file():
            shutil.copyfile(trained / name, SHIPPED_DIR / name)
    return file_sha256(SHIPPED_DIR / "model.safetensors")


@torch.inference_mode()
def loglik_accuracy(model_dir: Path, split: str = "id", n: int = 500, seed: int = 12345,
                    templates: tuple[str, ...] = ("bare",), partition: str | None = None,
                    task=None) -> float:
    """How often the LM gives the correct solution a higher log-likelihood than the corrupted one,
    on `n` pairs of `split` (or of the config `task`, e.g. a split with another error model) in the
    wordings `templates` (and of `partition`, e.g. "eval").

    The prompt is shared by both sides of a pair, so whole-sequence log-likelihoods compare
    the responses alone.
    """
    from nexus.backbones import load_backbone
    from nexus.tasks.arithmetic.problems import generate

    backbone = load_backbone(str(model_dir), lm_logprobs=True, logprob_scope="input").eval()
    task = dataclasses.replace(task or SPLITS[split], templates=templates, partition=partition)
    pairs = generate(n, seed=seed, cfg=task)["pairwise"]
    prompts = [p.prompt for p in pairs]
    batch = backbone.encode(prompts + prompts, [p.chosen for p in pairs] + [p.rejected for p in pairs])
    mean_logp = backbone(**batch)[:, -2]
    total = mean_logp * (batch["attention_mask"].sum(-1) - 1)  # mean -> sum over the tokens read
    return (total[:n] > total[n:]).float().mean().item()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ladder", action="store_true", help="the ladder's task LM (`LADDER`), not the original")
    parser.add_argument("--ship", action="store_true", help="copy it into the repository (SHIPPED_DIR); print its hash")
    for name, value in asdict(ArithLMConfig()).items():
        if isinstance(value, (int, float, str)):
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=None)
    parser.add_argument("--eval-pairs", type=int, default=0,
                        help="also print the log-likelihood accuracy on this many pairs of each split")
    args = vars(parser.parse_args(argv))
    n_eval, ladder, shipping = args.pop("eval_pairs"), args.pop("ladder"), args.pop("ship")
    cfg = dataclasses.replace(LADDER if ladder else ArithLMConfig(),
                              **{k: v for k, v in args.items() if v is not None})
    path = arith_lm_dir(cfg)
    wordings = {" (seen wordings)": SEEN_TEMPLATES, " (unseen wordings)": UNSEEN_TEMPLATES} if ladder else {"": ("bare",)}
    for split in (LEVELS if ladder else SPLITS) if n_eval else ():
        for name, templates in wordings.items():
            accuracy = loglik_accuracy(path, split, n_eval, templates=templates, partition="eval" if ladder else None)
            print(f"log-likelihood accuracy on {n_eval} {split} pairs{name}: {accuracy:.4f}")
    print(path)
    if shipping:
        print(f"shipped to {SHIPPED_DIR}; SHIPPED_SHA256 = {ship(path)!r}")


# arith-lm[-s<pretraining seed>][@<split>], e.g. arith-lm, arith-lm@shifted, arith-lm-s3
ARITH_LM_NAME = re.compile(r"arith-lm(?:-s(\d+))?(?:@(\w+))?")


def resolve_task_lm(name: str) -> Path | None:
    """The directory of a task LM named `name` (trained on first use), or None for other names:
    "arith-lm-ladder", the difficulty ladder's LM shipped with nexus; "arith-lm@shifted", trained on
    another split; "arith-lm-s3", pretraining seed 3 (differently pretrained members of an
    ensemble, Eisenstein et al. 2023)."""
    if name == "arith-lm-ladder":
        return ladder_lm_dir()
    match = ARITH_LM_NAME.fullmatch(name)
    if match is None:
        return None
    seed, split = match.groups()
    return arith_lm_dir(ArithLMConfig(split=split or "id", seed=int(seed or 0)))


register_names("arith-lm, arith-lm-ladder", resolve_task_lm)


if __name__ == "__main__":
    main()

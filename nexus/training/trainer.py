"""`RewardTrainer`: `transformers.Trainer` with a pairwise reward loss.

Checkpointing, resuming, gradient accumulation, mixed precision, torchrun/accelerate
data parallelism and `report_to` come from the library. Legend: b pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import special
import torch
from safetensors.torch import load_model, save_model
from transformers import Trainer, TrainingArguments

from nexus import losses, metrics
from nexus.data.collators import IGNORE
from nexus.validation import check_positive_int


@dataclass
class RewardTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus the reward loss, as TRL's RewardConfig."""

    loss: str = field(default="bt", metadata={"help": f"pairwise loss: one of {sorted(losses.LOSSES)}"})
    center_rewards_coefficient: float | None = field(
        default=None, metadata={"help": "weight of mean((r_c + r_r)^2), Eisenstein et al. 2023"}
    )
    label_smoothing: float = field(default=0.0, metadata={"help": "preference label 1 - eps, for noisy labels"})
    remove_unused_columns: bool = False
    report_to: str | list[str] = "none"

    def __post_init__(self) -> None:
        """Refuse sizes the Trainer would ignore or fail on later: batch sizes and accumulation
        steps must be integers >= 1, `max_steps` -1 (use `num_train_epochs`) or >= 1, and
        `num_train_epochs` a number > 0; errors name the option and the allowed range."""
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            check_positive_int(name, getattr(self, name))
        if self.max_steps != -1:
            try:
                check_positive_int("max_steps", self.max_steps)
            except ValueError:
                raise ValueError(f"max_steps={self.max_steps!r}: expected an integer >= 1, or -1 to train for "
                                 "num_train_epochs") from None
        epochs = self.num_train_epochs
        if isinstance(epochs, bool) or not isinstance(epochs, (int, float)) or not 0 < epochs < float("inf"):
            raise ValueError(f"num_train_epochs={epochs!r}: expected a number > 0")
        super().__post_init__()


def pairwise_metrics(eval_pred) -> dict[str, float]:
    """Accuracy, mean margin, ECE (both orientations) and NLL from 'b 2' eval rewards."""
    rewards = np.asarray(eval_pred.predictions, dtype=np.float64)
    chosen, rejected = rewards[:, 0], rewards[:, 1]
    probs, labels = metrics.preference_probabilities(chosen, rejected)
    return {
        "accuracy": metrics.pairwise_accuracy(chosen, rejected),
        "margin": metrics.mean_margin(chosen, rejected),
        "ece": metrics.preference_ece(chosen, rejected),
        "nll": metrics.negative_log_likelihood(probs, labels),
    }


def pointwise_metrics(eval_pred) -> dict[str, float]:
    """AUROC, accuracy at 0.5 and NLL of per-position logits where labels are given (outcome
    or per-step correctness); soft labels are rounded for AUROC and accuracy."""
    logits = np.asarray(eval_pred.predictions, dtype=np.float64)
    labels = np.asarray(eval_pred.label_ids, dtype=np.float64)
    given = labels != IGNORE
    z, y = logits[given], labels[given]
    probs, hard = special.expit(z), (y >= 0.5).astype(np.float64)
    out = {"accuracy": float(((probs >= 0.5) == (hard == 1)).mean()), "nll": metrics.negative_log_likelihood(probs, y)}
    if 0 < hard.sum() < hard.size:
        out["auroc"] = metrics.auroc(z, hard)
    return out


def _is_hf_dataset(value) -> bool:
    """Whether `value` is a `datasets.Dataset` or `IterableDataset` (without importing datasets)."""
    return type(value).__module__.startswith("datasets.") and hasattr(value, "column_names")


class RewardTrainer(Trainer):
    """Trains any `RewardModel` on the data its `data_format` names, with the batches of its
    `data_collator` and the loss of its `training_loss` (`RewardModel.training_loss`: Bradley-Terry
    on chosen and rejected in one forward pass by default; per-position binary cross-entropy for
    outcome and process RMs; the ensemble's and the generative judge's own). Evaluation reads the
    'b 2' rewards of pairwise families and the per-position logits and labels of the others.
    `train_dataset` and `eval_dataset` are lists of nexus examples or a `datasets.Dataset` in
    TRL's formats (`nexus.data.hf`), converted for the model's `data_format`.
    """

    def __init__(self, model, args: RewardTrainingArguments, data_collator=None, compute_metrics=None, **kwargs):
        if args.loss not in losses.LOSSES:
            raise ValueError(f"loss={args.loss!r}: expected one of {sorted(losses.LOSSES)}")
        data_format = getattr(model, "data_format", "pairwise")
        pairwise = data_format == "pairwise"
        for name in ("train_dataset", "eval_dataset"):  # a `datasets.Dataset` of TRL's (or nexus's) columns
            if _is_hf_dataset(kwargs.get(name)):
                from nexus.data.hf import examples_from_rows

                kwargs[name] = examples_from_rows(kwargs[name], data_format, f"{name} (a datasets.Dataset)")
        data_collator = data_collator or model.data_collator(seed=args.seed)
        if args.n_gpu > 1 and getattr(data_collator, "share_prompts", False):
            data_collator.share_prompts = False  # DataParallel splits every tensor by rows; packed indices can't
        super().__init__(
            model=model, args=args, data_collator=data_collator,
            compute_metrics=compute_metrics or (pairwise_metrics if pairwise else pointwise_metrics), **kwargs,
        )

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """Checkpoint weights with `safetensors.torch.save_model`, which handles tied
        weights (an LM head tied to the embeddings); training args as JSON, not pickle."""
        output_dir = Path(output_dir or self.args.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        save_model(self.accelerator.unwrap_model(self.model), str(output_dir / "model.safetensors"))
        (output_dir / "training_args.json").write_text(self.args.to_json_string())

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """Resume weights with `safetensors.torch.load_model`, the mirror of `_save`."""
        load_model(model or self.model, str(Path(resume_from_checkpoint) / "model.safetensors"))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The model's own `training_loss`, its forward passes through `model` as wrapped for
        data parallelism."""
        loss, outputs = self.accelerator.unwrap_model(model).training_loss(model, inputs, self.args)
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
        if "labels" in inputs:  # batches of different widths are padded with -100 = IGNORE by the Trainer
            return loss.detach(), outputs["logits"].detach(), inputs["labels"]
        rewards = outputs["rewards"].detach()
        # Every pair's label is "chosen wins"; the metrics read the 'b 2' rewards.
        return loss.detach(), rewards, torch.zeros(rewards.shape[0], device=rewards.device)

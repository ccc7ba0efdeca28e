"""Training: one `transformers.Trainer` subclass with a pluggable loss."""

from nexus.training.trainer import RewardTrainer, RewardTrainingArguments, pairwise_metrics

__all__ = ["RewardTrainer", "RewardTrainingArguments", "pairwise_metrics"]

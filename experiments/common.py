"""Shared pieces of the entry points: data from a config, evaluation tables, logger setup."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from nexus.data import arithmetic
from nexus.data.formats import PairwiseExample, read_pairwise
from nexus.evaluation import pairwise_report, pairwise_rewards
from nexus.reporting import plot_reliability, write_report


def load_pairs(data: DictConfig) -> tuple[list[PairwiseExample], dict[str, list[PairwiseExample]]]:
    """(train pairs, {eval name: pairs}) for the `data` config group."""
    if data.name == "arithmetic":
        train = arithmetic.generate(data.n_train, data.train_seed, arithmetic.SPLITS[data.train_split])["pairwise"]
        evals = {
            split: arithmetic.generate(data.n_eval, data.eval_seed, arithmetic.SPLITS[split])["pairwise"]
            for split in data.eval_splits
        }
        return train, evals
    if data.name == "jsonl":
        return read_pairwise(data.train_file), {k: read_pairwise(v) for k, v in data.eval_files.items()}
    raise ValueError(f"data.name={data.name!r}: expected 'arithmetic' or 'jsonl'")


def evaluation_report(rm, evals: dict, out_dir: Path, extra_columns: dict | None = None) -> str:
    """Evaluate on every set, write metrics/table/reliability plot into `out_dir`, return the table."""
    rows, curves = [], {}
    for name, pairs in evals.items():
        chosen, rejected, seconds = pairwise_rewards(rm, pairs)
        rows.append({"eval_set": name, **(extra_columns or {}), **pairwise_report(chosen, rejected, seconds)})
        curves[name] = (chosen, rejected)
    table = write_report(out_dir, rows)
    plot_reliability(out_dir / "reliability.png", curves)
    return table


def configure_logger(logger: DictConfig) -> str:
    """Return `report_to`; wandb runs offline unless the config says otherwise."""
    if logger.report_to == "wandb":
        os.environ.setdefault("WANDB_MODE", logger.get("mode", "offline"))
        os.environ.setdefault("WANDB_PROJECT", logger.get("project", "nexus"))
    return logger.report_to


def save_config(cfg: DictConfig, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

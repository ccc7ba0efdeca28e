"""Shared pieces of the entry points: data from a config, evaluation tables, logger setup."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from nexus.data import arithmetic
from nexus.data.formats import PairwiseExample, read_jsonl, read_pairwise
from nexus.data.formats import flip_preferences
from nexus.evaluation import pairwise_report, score_pairs
from nexus.reporting import plot_reliability, write_report


@dataclass
class RunData:
    """The pairs a run uses: training, named evaluation sets, and an optional validation set
    on which the temperature of the preference probability is fitted."""

    train: list[PairwiseExample]
    evals: dict[str, list[PairwiseExample]]
    calibration: list[PairwiseExample] | None = None


def load_data(data: DictConfig, train_format: str = "pairwise") -> RunData:
    """The data named by the `data` config group: training examples in `train_format`
    (pairwise, outcome or process: what the model trains on), evaluation pairs always pairwise."""
    if data.name == "arithmetic":
        make = lambda n, seed, split, kind="pairwise": (  # noqa: E731
            arithmetic.generate(n, seed, arithmetic.SPLITS[split])[kind])
        train = make(data.n_train, data.train_seed, data.train_split, train_format)
        if train_format == "pairwise":
            train = flip_preferences(train, data.get("label_noise", 0.0), seed=data.train_seed)
        evals = {split: make(data.n_eval, data.eval_seed, split) for split in data.eval_splits}
        n_cal = data.get("n_calibration", 0)
        calibration = make(n_cal, data.calibration_seed, data.train_split) if n_cal else None
        return RunData(train, evals, calibration)
    if data.name == "jsonl":
        calibration = read_pairwise(data.calibration_file) if data.get("calibration_file") else None
        return RunData(read_jsonl(data.train_file, train_format),
                        {k: read_pairwise(v) for k, v in data.eval_files.items()}, calibration)
    raise ValueError(f"data.name={data.name!r}: expected 'arithmetic' or 'jsonl'")


def calibrate(rm, pairs: list[PairwiseExample] | None) -> float | None:
    """Fit the RM's preference temperature on validation pairs (None: leave T = 1)."""
    if not pairs:
        return None
    return rm.calibrate([p.prompt for p in pairs], [p.chosen for p in pairs], [p.rejected for p in pairs])


def evaluation_report(rm, evals: dict, out_dir: Path, extra_columns: dict | None = None) -> str:
    """Evaluate on every set, write metrics/table/reliability plot into `out_dir`, return the table."""
    rows, curves = [], {}
    for name, pairs in evals.items():
        scores = score_pairs(rm, pairs)
        rows.append({"eval_set": name, **(extra_columns or {}), **pairwise_report(scores)})
        curves[name] = scores.p_chosen
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

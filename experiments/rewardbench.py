"""RewardBench on any RM: `python -m experiments.run experiment=rewardbench experiment.data=... [experiment.checkpoint=...]`.

The data is a file (jsonl, json, parquet, csv) or a hub id in RewardBench's layout (`prompt,
chosen, rejected, subset`; e.g. allenai/reward-bench, split `filtered`) or RewardBench 2's
(`chosen: [one], rejected: [several]`; allenai/reward-bench-2, split `test`). The RM is
`experiment.checkpoint` (a nexus checkpoint, a transformers sequence classifier, or a hub id of
either), else the run's `model` config as built (for example a zero-shot generative judge).

Writes metrics.json/.csv (one row per subset), accuracy.png, results.md with the section scores
(`nexus.rewardbench`), and, for pairs, ECE after temperature scaling (two-fold: the temperature
fitted on one half of the pairs is applied to the other) and, for families with uncertainty, the
AUROC of the pair's summed uncertainty for its mistakes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig
from transformers import set_seed

import nexus
from experiments.common import log_study
from nexus import metrics, rewardbench
from nexus.calibration import fit_temperature
from nexus.data.formats import PairwiseExample
from nexus.evaluation import score_pairs
from nexus.reporting import write_report


def load_rows(exp: DictConfig) -> list[dict]:
    """The benchmark's rows from a file or a hub id (`datasets.load_dataset`)."""
    import datasets

    path = str(exp.data)
    builder = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}.get(Path(path).suffix.lower())
    if builder:
        dataset = datasets.load_dataset(builder, data_files={exp.split: path}, split=exp.split)
    else:
        dataset = datasets.load_dataset(path, exp.get("subset_config"), split=exp.split)
    rows = [dict(row) for row in dataset]
    return rows[: exp.max_rows] if exp.get("max_rows") else rows


def build_rm(cfg: DictConfig):
    exp = cfg.experiment
    if exp.checkpoint:
        return nexus.load(exp.checkpoint, dtype=exp.get("dtype"))
    set_seed(cfg.seed)  # a model built here (an untrained head, a judge's LoRA) is the same every run
    return instantiate(cfg.model).eval()


def two_fold_ece(logits: np.ndarray, seed: int) -> float:
    """ECE of P(chosen) after temperature scaling, each half's temperature fitted on the other half."""
    order = np.random.default_rng(seed).permutation(len(logits))
    halves = [order[: len(order) // 2], order[len(order) // 2:]]
    p = np.empty(len(logits))
    for fit, apply in (halves, halves[::-1]):
        p[apply] = 1.0 / (1.0 + np.exp(-logits[apply] / fit_temperature(logits[fit])))
    return metrics.expected_calibration_error(*metrics.both_orientations(p))


def evaluate_pairs(rm, rows: list[dict], seed: int) -> tuple[list[dict], dict]:
    pairs = [PairwiseExample(r["prompt"], r["chosen"], r["rejected"]) for r in rows]
    scores = score_pairs(rm, pairs)
    wins = rewardbench.pair_wins(*scores.rewards)
    accuracy, counts = rewardbench.per_subset([r["subset"] for r in rows], wins)
    extra = {"layout": "RewardBench pairs", "n_rows": len(rows), "sections": rewardbench.section_scores(accuracy, counts),
             "section_weights": rewardbench.section_weights(counts)}
    try:
        extra["ece_temperature_scaled"] = two_fold_ece(scores.logits, seed)
    except ValueError as err:  # too few informative pairs to fit a temperature on a half
        extra["ece_temperature_scaled"], extra["ece_note"] = float("nan"), str(err)
    if scores.chosen.uncertainty is not None and 0 < wins.sum() < len(wins):
        spread = (scores.chosen.uncertainty + scores.rejected.uncertainty).double().numpy()
        extra["uncertainty_auroc_for_mistakes"] = metrics.auroc(spread, 1.0 - wins)
    table = [{"subset": s, "n": counts[s], "accuracy": accuracy[s]} for s in accuracy]
    return table, extra


def evaluate_best_of_k(rm, rows: list[dict]) -> tuple[list[dict], dict]:
    prompts, responses, sizes = [], [], []
    for r in rows:
        candidates = [*r["chosen"], *r["rejected"]]
        prompts += [r["prompt"]] * len(candidates)
        responses += candidates
        sizes.append(len(candidates))
    rewards = rm.score(prompts, responses, normalize=False, progress=len(responses) > 2000).rewards.double().numpy()
    wins = rewardbench.best_of_k_wins(rewards, sizes)
    accuracy, counts = rewardbench.per_subset([r["subset"] for r in rows], wins)
    extra = {"layout": "RewardBench 2 best-of-k", "n_rows": len(rows),
             "sections": {"Score": float(np.mean(list(accuracy.values())))}}
    return [{"subset": s, "n": counts[s], "accuracy": accuracy[s]} for s in accuracy], extra


def plot_accuracy(path: Path, table: list[dict], sections: dict, title: str) -> None:
    """Bars of per-subset accuracy (with example counts) and of the section scores, chance at 0.5."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{r['subset']} ({r['n']})" for r in table] + list(sections)
    values = [r["accuracy"] for r in table] + list(sections.values())
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(names) + 1.2))
    ax.barh(names, values, color=["tab:blue"] * len(table) + ["tab:orange"] * len(sections))
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("accuracy (subsets, blue; section scores, orange)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(cfg: DictConfig, out_dir: Path) -> dict:
    exp = cfg.experiment
    rows = load_rows(exp)
    layout = rewardbench.check_rows(rows, f"experiment.data={exp.data} [{exp.split}]")
    rm = build_rm(cfg)
    table, extra = evaluate_pairs(rm, rows, cfg.seed) if layout == "pairs" else evaluate_best_of_k(rm, rows)
    extra["model"] = rm.model_type
    report = write_report(out_dir, table, extra)
    plot_accuracy(out_dir / "accuracy.png", table, extra["sections"], f"{extra['layout']}: {rm.model_type}")
    sections = "; ".join(f"{k} {v:.3f}" for k, v in extra["sections"].items())
    log_study(cfg, out_dir, {"subsets": table}, extra)
    print(f"\n{report}\n\n{extra['layout']}, {rm.model_type}: {sections}\nwritten to {out_dir}", flush=True)
    return {"rows": table, **extra}

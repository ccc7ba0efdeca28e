"""Active learning on `arithmetic`: `python -m experiments.run experiment=active_learning`.

Pool-based (`nexus.active.active_learning`): for each repetition seed, a random seed set of
labelled pairs, then rounds of acquiring a batch of labels from the pool by each selection method
(ensemble disagreement, smallest margin, random), retraining, and measuring held-out pairwise
accuracy (and ECE, NLL). Every method of one seed starts from the same seed set and init.

Writes metrics.json/.csv (one row per method, seed and round), curve.csv (mean and spread over
seeds per method and label count), results.md (the curve and the area under it per method) and
curve.png (accuracy against labels). Legend: b pairs.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig
from transformers import set_seed

from experiments.common import derive_config, train_rm
from nexus.active import ENSEMBLE_METHODS, METHODS, active_learning
from nexus.tasks import arithmetic
from nexus.data.formats import flip_preferences
from nexus.evaluation import evaluate_pairwise
from nexus.reporting import markdown_table, write_csv, write_report

KEPT = ("accuracy", "ece", "nll")
ENSEMBLE_TARGET = "nexus.models.ensemble.EnsembleRewardModel"


def pairs(exp: DictConfig) -> tuple[list, list]:
    """(pool, held-out) arithmetic pairs; the pool's labels are flipped at `experiment.label_noise`."""
    split = arithmetic.SPLITS[exp.split]
    pool = arithmetic.generate(exp.n_pool, exp.pool_seed, split)["pairwise"]
    pool = flip_preferences(pool, exp.label_noise, seed=exp.pool_seed)
    return pool, arithmetic.generate(exp.n_eval, exp.eval_seed, split)["pairwise"]


def check_methods(methods, model_cfg: DictConfig) -> list[str]:
    """`experiment.methods`, checked before any training: known names, and an ensemble for disagreement."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"experiment.methods: {unknown[0]!r} is not one of {METHODS}")
    needs_members = [m for m in methods if m in ENSEMBLE_METHODS]
    if needs_members and model_cfg._target_ != ENSEMBLE_TARGET:
        raise ValueError(f"experiment.methods: {needs_members[0]!r} needs an ensemble (model=ensemble), "
                         f"got {model_cfg._target_}; use margin or random")
    return list(methods)


def run_method(cfg: DictConfig, method: str, seed: int, pool: list, held_out: list, out_dir: Path) -> list[dict]:
    """One learning curve: the rows of `active_learning` for `method` and repetition `seed`."""
    exp = cfg.experiment
    rm_cfg = derive_config(cfg, model={"seed": cfg.seed + seed} if "seed" in cfg.model else None)

    def build():
        set_seed(cfg.seed + seed)  # every method of a seed starts from one init
        return instantiate(rm_cfg.model)

    def train(rm, labelled):
        train_rm(rm, cfg.trainer, cfg.logger, labelled, out_dir / "checkpoints", seed=cfg.seed + seed)

    def evaluate(rm):
        report = evaluate_pairwise(rm, held_out)
        return {key: report[key] for key in KEPT}

    return active_learning(build, train, evaluate, pool, method, seed_size=exp.seed_size, acquire=exp.acquire,
                           rounds=exp.rounds, seed=seed, retrain=exp.retrain)


def curve(rows: list[dict], methods: list[str]) -> list[dict]:
    """Per method and label count: mean, min and max accuracy over seeds (and mean ECE)."""
    out = []
    for method in methods:
        for n in sorted({r["n_labels"] for r in rows if r["method"] == method}):
            acc = [r["accuracy"] for r in rows if r["method"] == method and r["n_labels"] == n]
            ece = [r["ece"] for r in rows if r["method"] == method and r["n_labels"] == n]
            out.append({"method": method, "n_labels": n, "accuracy": float(np.mean(acc)), "min": float(np.min(acc)),
                        "max": float(np.max(acc)), "ece": float(np.mean(ece)), "n_seeds": len(acc)})
    return out


def area_under_curve(points: list[dict], methods: list[str]) -> list[dict]:
    """Per method: the mean accuracy over all rounds (the area under the learning curve divided by
    its width, with equal label steps) and the accuracy at the last round."""
    rows = []
    for method in methods:
        mine = [p for p in points if p["method"] == method]
        rows.append({"method": method, "mean_accuracy": float(np.mean([p["accuracy"] for p in mine])),
                     "final_accuracy": mine[-1]["accuracy"], "final_labels": mine[-1]["n_labels"]})
    return rows


def run(cfg: DictConfig, out_dir: Path) -> dict:
    """Every (seed, method) learning curve, then the reports; returns the rows, curve and bookkeeping."""
    exp = cfg.experiment
    methods = check_methods(exp.methods, cfg.model)
    pool, held_out = pairs(exp)
    rows, start = [], time.perf_counter()
    for seed in exp.seeds:
        for method in methods:
            rows += run_method(cfg, method, int(seed), pool, held_out, out_dir)
            last = rows[-1]
            print(f"seed {seed} {method}: accuracy {last['accuracy']:.3f} at {last['n_labels']} labels "
                  f"({time.perf_counter() - start:.0f} s so far)", flush=True)
    flat = [{k: v for k, v in r.items() if k not in ("acquired", "seed_set")} for r in rows]
    points, auc = curve(flat, methods), area_under_curve(curve(flat, methods), methods)
    extra = {"curve": points, "area_under_curve": auc, "seconds": time.perf_counter() - start,
             "acquired": [{k: r.get(k) for k in ("method", "seed", "round", "seed_set", "acquired")} for r in rows]}
    write_report(out_dir, flat, extra)
    write_csv(out_dir / "curve.csv", points)
    report = (f"## Accuracy against labels ({len(exp.seeds)} seeds; held-out {exp.n_eval} pairs)\n\n"
              f"{markdown_table(points)}\n\n## Area under the curve\n\n{markdown_table(auc)}\n")
    (out_dir / "results.md").write_text(report)
    plot_curve(out_dir / "curve.png", points, methods, exp)
    print(f"\n{report}\nwritten to {out_dir}", flush=True)
    return extra | {"rows": flat}


def plot_curve(path: Path, points: list[dict], methods: list[str], exp: DictConfig) -> None:
    """Mean held-out accuracy against labels per method, with the min-max band over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for method in methods:
        mine = [p for p in points if p["method"] == method]
        x = [p["n_labels"] for p in mine]
        ax.plot(x, [p["accuracy"] for p in mine], marker="o", label=method)
        ax.fill_between(x, [p["min"] for p in mine], [p["max"] for p in mine], alpha=0.15)
    ax.set(xlabel="labelled pairs", ylabel="held-out pairwise accuracy",
           title=f"Active learning on arithmetic ({exp.split}), {len(exp.seeds)} seeds (band: min-max)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

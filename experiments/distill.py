"""Rule reward -> neural RM: `python -m experiments.run experiment=distill`.

Arithmetic texts (noisy-solver solutions, some truncated, padded with repeated lines or wrapped in
prose: `nexus.tasks.arithmetic.texts.arithmetic_texts`) are labelled by a composite rule reward (format,
math_correct against the true answer, length, repetition). Each student (a scalar or ensemble RM
on preference pairs, an outcome RM on regression targets) trains on the training texts' rule
rewards; on held-out texts (other problems) we report its Spearman and Kendall correlation with
the rule reward, before and after training, and how many held-out rule-preference pairs it orders
as the rules do.

Writes metrics.json/.csv (one row per student), results.md, scatter.png (student reward against
rule reward on held-out texts) and, with `save_models`, the students under models/.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from transformers import set_seed

from experiments.common import configure_logger, job_folder
from nexus.distill import LabelledTexts, distill, label_texts
from nexus.models.rules import RulesRewardModel
from nexus.reporting import write_report
from nexus.tasks.arithmetic.texts import arithmetic_texts


def texts(exp: DictConfig, rules: RulesRewardModel, n_problems: int, seed: int) -> LabelledTexts:
    """`experiment.texts.samples` solutions to each of `n_problems` problems, labelled by the rules."""
    t = exp.texts
    prompts, responses, references = arithmetic_texts(n_problems, t.samples, seed, exp.split, t.error_rate,
                                                      t.perturb_rate)
    return label_texts(rules, prompts, responses, references if rules.reference_labels else None)


def run(cfg: DictConfig, out_dir: Path) -> dict:
    """Label the texts, distil into every student, report; returns the rows and the run's facts."""
    exp = cfg.experiment
    rules = RulesRewardModel(**OmegaConf.to_container(exp.rules, resolve=True))
    train, held_out = texts(exp, rules, exp.n_train_problems, exp.train_seed), texts(exp, rules, exp.n_test_problems,
                                                                                       exp.test_seed)
    print(f"{len(train)} training texts, {len(held_out)} held-out; rule reward mean {train.rewards.mean():.3f}, "
          f"{len(np.unique(train.rewards))} distinct values", flush=True)
    rows, scores = [], {}
    for name, student in exp.students.items():
        set_seed(cfg.seed)
        rm = instantiate(student.model)
        args = instantiate(cfg.trainer, output_dir=str(out_dir / "checkpoints" / name),
                           report_to=configure_logger(cfg.logger, job_folder(out_dir)))
        report = distill(rm, rules, train, held_out, args, student.targets, exp.margin, exp.max_pairs)
        rows.append({"student": name, "model": rm.model_type, "targets": student.targets, **report})
        print(f"{name}: Spearman {report['spearman_before']:.3f} -> {report['spearman']:.3f} "
              f"({report['train_seconds']:.0f} s)", flush=True)
        scores[name] = rm.score(held_out.prompts, held_out.responses, normalize=False).rewards.numpy()
        if exp.save_models:
            rm.save_pretrained(out_dir / "models" / name)
    extra = {"n_train_texts": len(train), "n_held_out_texts": len(held_out),
             "rule_reward_values": sorted(set(np.round(train.rewards, 6).tolist())), "rules": rules.config_dict()}
    table = write_report(out_dir, rows, extra)
    plot_scatter(out_dir / "scatter.png", held_out.rewards, scores, rows)
    print(f"\n{table}\n\nwritten to {out_dir}", flush=True)
    return {"rows": rows, **extra}


def plot_scatter(path: Path, rule: np.ndarray, scores: dict[str, np.ndarray], rows: list[dict]) -> None:
    """One panel per student: its reward against the rule reward on held-out texts (jittered x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(scores), figsize=(4 * len(scores), 3.6), squeeze=False)
    jitter = np.random.default_rng(0).uniform(-0.03, 0.03, rule.size)
    for ax, row in zip(axes[0], rows):
        ax.scatter(rule + jitter, scores[row["student"]], s=6, alpha=0.4)
        ax.set(xlabel="rule reward", ylabel=f"{row['student']} reward",
               title=f"{row['student']} ({row['targets']}): Spearman {row['spearman']:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

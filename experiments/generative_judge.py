"""The generative judge on arithmetic: `python -m experiments.run experiment=generative_judge`.

1. **Zero-shot**: the run's backbone (SmolLM2-135M-Instruct by default) as a one-forward verdict
   judge: AUROC, accuracy, ECE, Brier and NLL of P(Yes) against the ground truth on held-out
   outcome examples (`verdict_report`); on held-out pairs (a correct solution and one with an
   injected error) the pairwise judge asked in both orders: accuracy of the swap-averaged
   probability and position consistency (how often the verdict survives the swap).
2. **Fine-tuned**: the same judge after LoRA fine-tuning of the verdict token (next-token
   prediction, `VerdictCollator`) on `experiment.n_train` outcome examples; the same metrics.
3. **Critique-revision** (Constitutional AI): the zero-shot judge critiques `critique_revision.n`
   responses against the principles, the policy revises them, the pairs (revised preferred to
   original) go to cai_pairs.jsonl; a scalar RM trains on the first `train_fraction` of them and is
   scored on the rest (does it learn the revision preference?) and on the held-out ground-truth
   pairs (does that preference help on correctness?). How often the revision fixes, keeps or
   breaks the final answer is counted against the task's truth.

Writes metrics.json/.csv (a row per judge and a row for the pairs' RM), results.md,
reliability.png (P(Yes) before and after fine-tuning) and cai_pairs.jsonl.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from transformers import set_seed

from experiments.common import derive_config, train_rm
from nexus import metrics
from nexus.tasks import arithmetic
from nexus.data.formats import read_pairwise, write_jsonl
from nexus.evaluation import pairwise_report, score_pairs
from nexus.models.generative import GenerativeRewardModel
from nexus.models.judge import verdict_metrics
from nexus.reporting import markdown_table, plot_reliability, write_report
from nexus.sampling.critique_revision import critique_revise


def judge_rows(judge: GenerativeRewardModel, outcome, pairs) -> tuple[dict, np.ndarray]:
    """Pointwise verdict metrics on `outcome`, pairwise accuracy and position consistency on `pairs`;
    and P(Yes) per outcome example (for the reliability diagram)."""
    log_odds = judge.score([e.prompt for e in outcome], [e.response for e in outcome]).rewards
    report = verdict_metrics(log_odds, [e.label for e in outcome])
    prompts = [p.prompt for p in pairs]
    first, second = judge.compare_orders(prompts, [p.chosen for p in pairs], [p.rejected for p in pairs])
    averaged = 0.5 * (first + second)
    report.update({
        "pair_accuracy": float((averaged > 0.5).double().mean()),
        "pair_accuracy_first_order": float((first > 0.5).double().mean()),
        "position_consistency": metrics.position_consistency(first, second),
        "p_a_first_mean": float(first.mean()), "p_a_second_mean": float(second.mean()),
    })
    return report, torch.sigmoid(log_odds).numpy()


def revision_outcomes(pairs) -> dict[str, int]:
    """How the revision changed the final answer's correctness (ground truth of the task)."""
    counts = {"fixed": 0, "kept_right": 0, "broke": 0, "kept_wrong": 0}
    for p in pairs:
        before, after = arithmetic.gold_reward(p.prompt, p.rejected), arithmetic.gold_reward(p.prompt, p.chosen)
        key = {(0, 1): "fixed", (1, 1): "kept_right", (1, 0): "broke", (0, 0): "kept_wrong"}[(int(before), int(after))]
        counts[key] += 1
    return counts


def critique_revision_rows(cfg: DictConfig, judge: GenerativeRewardModel, eval_pairs, out_dir: Path) -> dict:
    """Write critique-revision pairs, train a scalar RM on part of them, evaluate it."""
    cr = cfg.experiment.critique_revision
    start = time.perf_counter()
    if cr.pairs_from:  # an earlier run's pairs: train and evaluate the RM without generating again
        pairs = read_pairwise(cr.pairs_from)
        n_responses = None
    else:
        problems = arithmetic.generate(cr.n, cr.seed, arithmetic.SPLITS[cfg.experiment.split])["outcome"][: cr.n]
        policy = instantiate(cr.policy)
        pairs = critique_revise(judge, policy, [e.prompt for e in problems], [e.response for e in problems],
                                list(cr.principles), seed=cfg.seed)
        n_responses = len(problems)
    seconds = time.perf_counter() - start
    write_jsonl(out_dir / "cai_pairs.jsonl", pairs)
    n_fit = int(len(pairs) * cr.train_fraction)
    train, held = pairs[:n_fit], pairs[n_fit:]
    row = {"judge": "scalar RM on critique-revision pairs", "n_responses": n_responses, "n_pairs": len(pairs),
           "generate_s": seconds, **revision_outcomes(pairs)}
    if len(train) < 2 or not held:
        print(f"critique-revision: only {len(pairs)} pairs; no RM trained", flush=True)
        return row
    set_seed(cfg.seed)
    rm = instantiate(cr.rm.model)
    before = pairwise_report(score_pairs(rm, held))["accuracy"]
    train_rm(rm, derive_config(cfg, trainer=cr.rm.trainer).trainer, cfg.logger, train, out_dir / "checkpoints" / "cai_rm")
    row.update({"n_train_pairs": len(train), "n_held_out_pairs": len(held),
                "cai_accuracy_before": before, "cai_accuracy": pairwise_report(score_pairs(rm, held))["accuracy"],
                "truth_pair_accuracy": pairwise_report(score_pairs(rm, eval_pairs))["accuracy"]})
    return row


def run(cfg: DictConfig, out_dir: Path) -> dict:
    exp = cfg.experiment
    split = arithmetic.SPLITS[exp.split]
    held = arithmetic.generate(max(exp.n_eval, exp.n_pairs), exp.test_seed, split)
    outcome, pairs = held["outcome"][: exp.n_eval], held["pairwise"][: exp.n_pairs]
    train = arithmetic.generate(exp.n_train, cfg.data.train_seed, split)["outcome"][: exp.n_train]

    set_seed(cfg.seed)
    judge = instantiate(cfg.model)
    if not isinstance(judge, GenerativeRewardModel):
        raise ValueError(f"model={type(judge).__name__}: the study needs model=generative")
    rows, p_yes = [], {}
    start = time.perf_counter()
    report, p_yes["zero-shot"] = judge_rows(judge, outcome, pairs)
    rows.append({"judge": "zero-shot", "n_train": 0, "train_s": 0.0, "eval_s": time.perf_counter() - start, **report})
    print(f"zero-shot: AUROC {report['auroc']:.3f}, ECE {report['ece']:.3f}, "
          f"position consistency {report['position_consistency']:.3f}", flush=True)

    cai = critique_revision_rows(cfg, judge, pairs, out_dir) if exp.critique_revision.n > 0 or exp.critique_revision.pairs_from else None

    train_s = train_rm(judge, cfg.trainer, cfg.logger, train, out_dir / "checkpoints" / "judge")
    start = time.perf_counter()
    report, p_yes["fine-tuned"] = judge_rows(judge, outcome, pairs)
    rows.append({"judge": "fine-tuned (LoRA)", "n_train": len(train), "train_s": train_s,
                 "eval_s": time.perf_counter() - start, **report})
    print(f"fine-tuned: AUROC {report['auroc']:.3f}, ECE {report['ece']:.3f}, "
          f"position consistency {report['position_consistency']:.3f}", flush=True)
    if exp.save_models:
        judge.save_pretrained(out_dir / "models" / "judge")

    labels = np.array([float(e.label >= 0.5) for e in outcome])
    plot_reliability(out_dir / "reliability.png", {name: (p, labels) for name, p in p_yes.items()},
                     title="P(Yes) of the judge against correctness", xlabel="P(Yes)")
    extra = {"critique_revision": cai, "n_eval": len(outcome), "n_pairs": len(pairs),
             "backbone": cfg.backbone.name_or_path}
    table = write_report(out_dir, rows, extra)
    report_md = f"# generative_judge ({cfg.backbone.name_or_path})\n\n{table}\n"
    if cai is not None:
        report_md += f"\n## Critique-revision\n\n{markdown_table([cai])}\n"
    (out_dir / "results.md").write_text(report_md)
    print(report_md, flush=True)
    return {"rows": rows, **extra}

"""PRM vs ORM on `arithmetic`: `python -m experiments.run experiment=process_vs_outcome`.

A policy (the task LM `arith-lm` sampled at a temperature, or the noisy solver) writes solutions;
the task's ground truth (or Math-Shepherd rollouts) labels them; a process RM and an outcome RM
train on the same samples with the same budget. On held-out problems, N candidates per problem
are scored and best-of-n accuracy is computed for every n in `ns` from that one pool (the
unbiased estimator of `nexus.sampling.best_of_n`): the PRM with each step aggregation, the ORM,
majority vote, PRM-weighted majority vote, random and oracle. Step-level AUROC and ProcessBench
F1 of the PRM are measured on the same candidates.

Writes metrics.json/.csv, results.md, best_of_n.png and the two models into the run directory.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from transformers import set_seed

from experiments.common import experiment_task, train_rm
from nexus import metrics
from nexus.tasks import arithmetic
from nexus.data.formats import OutcomeExample, ProcessExample
from nexus.models.process import aggregate_steps
from nexus.reporting import plot_best_of_n, write_report
from nexus.sampling import generate_cached
from nexus.sampling.best_of_n import best_of_n_expectation, majority_vote_expectation
from nexus.tasks.arithmetic.shepherd import arithmetic_correct, shepherd_labels


def labelled_samples(cfg: DictConfig, policy, seed: int) -> tuple[list[ProcessExample], list[OutcomeExample]]:
    """Policy samples on training problems, as process (per-step) and outcome (final answer) data."""
    exp = cfg.experiment
    prompts = [p.prompt for p in arithmetic.generate(exp.n_train_problems, exp.train_seed, experiment_task(cfg, "rm"))["pairwise"]]
    samples = generate_cached(policy, prompts, exp.train_samples, seed=seed)
    flat = [(p, s, arithmetic.parse_steps(s) or [""]) for p, ss in zip(prompts, samples) for s in ss]
    if exp.labels == "exact":
        step_labels = [arithmetic.label_steps(p, steps) for p, _, steps in flat]
    elif exp.labels == "shepherd":
        step_labels = shepherd_labels(policy, [p for p, _, _ in flat], [st for _, _, st in flat], exp.shepherd.k,
                                      arithmetic_correct, exp.shepherd.mode, policy.temperature, seed + 1)
    else:
        raise ValueError(f"experiment.labels={exp.labels!r}: expected 'exact' or 'shepherd'")
    process = [ProcessExample(p, tuple(steps), tuple(float(y) for y in labels))
               for (p, _, steps), labels in zip(flat, step_labels)]
    outcome = [OutcomeExample(p, s, arithmetic.gold_reward(p, s)) for p, s, _ in flat]
    return process, outcome


def train(cfg: DictConfig, model_cfg: DictConfig, data, out_dir: Path):
    set_seed(cfg.seed)
    rm = instantiate(model_cfg)
    return rm, train_rm(rm, cfg.trainer, cfg.logger, data, out_dir / "checkpoints")


def run(cfg: DictConfig, out_dir: Path) -> dict:
    exp = cfg.experiment
    policy = instantiate(exp.policy)
    process, outcome = labelled_samples(cfg, policy, cfg.seed)
    print(f"{len(process)} training solutions, {np.mean([o.label for o in outcome]):.1%} correct", flush=True)
    prm, prm_s = train(cfg, exp.prm, process, out_dir / "prm")
    orm, orm_s = train(cfg, exp.orm, outcome, out_dir / "orm")
    prm.save_pretrained(out_dir / "models" / "prm")
    orm.save_pretrained(out_dir / "models" / "orm")

    prompts = [p.prompt for p in arithmetic.generate(exp.n_test_problems, exp.test_seed, experiment_task(cfg, "eval"))["pairwise"]]
    pools = generate_cached(policy, prompts, exp.n_candidates, seed=cfg.seed + 7)
    flat_prompts = [p for p, pool in zip(prompts, pools) for _ in pool]
    flat = [s for pool in pools for s in pool]
    steps = [arithmetic.parse_steps(s) or [""] for s in flat]
    start = time.perf_counter()
    step_probs = prm.score(flat_prompts, steps, progress=True).step_rewards
    prm_score_s = time.perf_counter() - start
    orm_scores = orm.score(flat_prompts, flat, progress=True).rewards.numpy()

    # Step-level quality of the PRM on the candidates, against the exact step labels.
    true_steps = [arithmetic.label_steps(p, st) for p, st in zip(flat_prompts, steps)]
    all_probs = torch.cat(step_probs).numpy()
    all_labels = np.concatenate([np.asarray(t, dtype=float) for t in true_steps])
    firsts = [next((i for i, y in enumerate(t) if y == 0), None) for t in true_steps]
    bench = metrics.processbench([p.numpy() for p in step_probs], firsts)
    step_auroc = metrics.auroc(all_probs, all_labels) if 0 < all_labels.sum() < all_labels.size else float("nan")

    # Best-of-n from each pool of N candidates, averaged over problems; and how often each RM
    # ranks a correct candidate above a wrong one of the same pool (what best-of-n depends on).
    methods: dict[str, list[dict[int, float]]] = {}
    within: dict[str, list[float]] = {}
    offset = 0
    for prompt, pool in zip(prompts, pools):
        idx = slice(offset, offset + len(pool))
        offset += len(pool)
        gold = [arithmetic.gold_reward(prompt, s) for s in pool]
        answers = [arithmetic.final_answer(s) for s in pool]
        scores = {f"prm_{how}": [aggregate_steps(p, how).item() for p in step_probs[idx]] for how in exp.aggregations}
        scores["orm"] = list(orm_scores[idx])
        if 0 < sum(gold) < len(gold):
            for name, values in scores.items():
                within.setdefault(name, []).append(_correct_above_wrong(np.asarray(values), np.asarray(gold)))
        per = {name: {n: best_of_n_expectation(s, gold, n) for n in exp.ns} for name, s in scores.items()}
        per["majority_vote"] = {n: majority_vote_expectation(answers, gold, n, seed=cfg.seed) for n in exp.ns}
        per["prm_weighted_vote"] = {n: majority_vote_expectation(answers, gold, n, weights=scores["prm_prod"],
                                                                 seed=cfg.seed) for n in exp.ns}
        per["random"] = {n: float(np.mean(gold)) for n in exp.ns}
        per["oracle"] = {n: best_of_n_expectation(gold, gold, n) for n in exp.ns}
        for name, values in per.items():
            methods.setdefault(name, []).append(values)
    rows = [{"method": name, **{f"bo{n}": float(np.mean([v[n] for v in values])) for n in exp.ns},
             "correct_above_wrong": float(np.mean(within[name])) if name in within else float("nan")}
            for name, values in methods.items()]
    # 95% bootstrap intervals over test problems of every best-of-n value (seeds: aggregate a multirun)
    bands = {name: [metrics.bootstrap_interval(np.mean, np.array([v[n] for v in values]),
                                               n_resamples=exp.get("bootstrap_resamples", 1000), seed=cfg.seed)
                    for n in exp.ns] for name, values in methods.items()}
    extra = {"step_auroc": step_auroc, "processbench": bench, "train_seconds": {"prm": prm_s, "orm": orm_s},
             "prm_score_seconds": prm_score_s, "n_candidates_scored": len(flat),
             "train_solutions": len(process), "train_correct": float(np.mean([o.label for o in outcome])),
             "policy_pass_rate": float(np.mean([arithmetic.gold_reward(p, s) for p, s in zip(flat_prompts, flat)])),
             "bootstrap_95": {name: dict(zip(map(str, exp.ns), b)) for name, b in bands.items()}}
    table = write_report(out_dir, rows, extra)
    plot_best_of_n(out_dir / "best_of_n.png", rows, list(exp.ns), "bo", ("random", "oracle"), "n (candidates)",
                   "accuracy of the selected solution",
                   f"Best-of-n on arithmetic ({exp.split}), policy {policy.name}", bands)
    print(f"\n{table}\n\nPRM step AUROC {step_auroc:.4f}; ProcessBench {bench}\nwritten to {out_dir}", flush=True)
    return {"rows": rows, **extra}


def _correct_above_wrong(scores: np.ndarray, gold: np.ndarray) -> float:
    """P(score of a correct candidate > score of a wrong one) within one pool; ties count 1/2."""
    c, w = scores[gold == 1][:, None], scores[gold == 0][None, :]
    return float(((c > w) + 0.5 * (c == w)).mean())

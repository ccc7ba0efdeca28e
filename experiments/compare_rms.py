"""Every RM family on `arithmetic`: `python -m experiments.run experiment=compare_rms`.

The families are the files of `experiments/conf/model/` (the registry), so
a family added there appears here with no other change. Each trains on the data format its
`data_format` names (pairwise, outcome or process examples of the same problems), or not at all
(`"none"`, e.g. rules; or `experiment.per_family.<name>.train=false`, e.g. a zero-shot judge).
Then, per family: pairwise accuracy, ECE (after temperature scaling on validation pairs) and
Brier on held-out pairs (`nexus.evaluation`); best-of-n accuracy for every n in `ns` from one pool
of N policy samples per problem (the unbiased estimator of `nexus.sampling.best_of_n`), for each
selection rule the family's output supports; and scoring throughput on those pools.

Writes metrics.json/.csv (one row per family), selection.csv (one row per selection method,
with the baselines), results.md (both tables), reliability.png and best_of_n.png (95% bootstrap
bands over problems). Legend: p problems, c candidates of a pool, n best-of-n sizes.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from transformers import set_seed

from experiments.common import (RunData, arithmetic_tasks, calibrate, check_experiment_sizes, derive_config,
                                group_options, load_data, log_study, standardize_ensemble, train_rm)
from nexus import metrics
from nexus.tasks import arithmetic
from nexus.evaluation import pairwise_report, score_pairs
from nexus.reporting import markdown_table, plot_reliability, write_csv, write_report
from nexus.sampling import generate_cached
from nexus.sampling.best_of_n import (SELECTION_RULES, available_rules, best_of_n_expectation, bon_kl,
                                      distinct_random_curve, empirical_bon_kl, majority_vote_expectation,
                                      selection_scores, split_output, vote_weights)

# random: a uniformly random candidate (the pass rate); random_text: a scorer that gives every
# distinct text one random score (duplicates share it), what a ranker of texts unrelated to
# correctness gets when right answers repeat one string and wrong ones spread over many.
BASELINES = ("majority_vote", "random", "random_text", "oracle")


def family_yamls(exp: DictConfig | None = None) -> dict[str, Path]:
    """Every RM family -> its YAML: the `model` config group, then the folders of
    `experiment.model_dirs` (a researcher's own families; a name there replaces a built-in one)."""
    try:
        return group_options("model", exp.get("model_dirs") if exp is not None else None)
    except ValueError as err:
        raise ValueError(f"experiment.model_dirs: {err}") from None


def model_families(exp: DictConfig | None = None) -> list[str]:
    """Every RM family's name, sorted."""
    return sorted(family_yamls(exp))


def chosen_families(exp: DictConfig) -> list[str]:
    """`experiment.families`, or every family when it is null; unknown names raise."""
    known = model_families(exp)
    if exp.families is None:
        return known
    unknown = [f for f in exp.families if f not in known]
    if unknown:
        raise ValueError(f"experiment.families: {unknown[0]!r} is not in experiments/conf/model/ or "
                         f"experiment.model_dirs ({known})")
    return list(exp.families)


def family_config(cfg: DictConfig, family: str) -> DictConfig:
    """A copy of the run config whose `model` is that family's YAML and whose `model` and `trainer`
    carry `experiment.per_family.<family>` overrides (interpolations such as ${seed} still resolve)."""
    per = cfg.experiment.per_family.get(family) or {}
    unknown = sorted(set(per) - {"model", "trainer", "train"})
    if unknown:
        raise ValueError(f"experiment.per_family.{family}.{unknown[0]}: expected model, trainer or train")
    fam = derive_config(cfg, {"model": OmegaConf.load(family_yamls(cfg.experiment)[family]),
                              "train": per.get("train", True)}, model=per.get("model"), trainer=per.get("trainer"))
    return fam


def training_format(rm, train: bool) -> str | None:
    """The per-family hook: what `rm` trains on (its `data_format`), or None when it has nothing
    to train (`"none"`, e.g. rules) or the run says not to (zero-shot)."""
    fmt = getattr(rm, "data_format", "pairwise")
    if fmt == "none" or not train:
        return None
    if fmt not in ("pairwise", "outcome", "process"):
        raise ValueError(f"{type(rm).__name__}.data_format={fmt!r}: expected pairwise, outcome, process or none")
    return fmt


def loglik_variants(cfg: DictConfig, family: str) -> list[bool | None]:
    """The settings of the log-likelihood features to compare `family` under: each of
    `experiment.loglik` for a family whose head reads the backbone's features, else [None] (the
    factor does not apply: a judge, rules)."""
    from hydra.utils import get_class

    target = OmegaConf.load(family_yamls(cfg.experiment)[family]).get("_target_")
    reads = target is not None and getattr(get_class(target), "reads_features", False)
    options = cfg.experiment.get("loglik")
    if not reads or options is None:
        return [None]
    return [bool(v) for v in options]


def variant_name(family: str, loglik: bool | None, variants: list) -> str:
    """The row name of one variant: the family, marked +ll / -ll when both settings run."""
    return family if len(variants) == 1 else f"{family}{'+ll' if loglik else '-ll'}"


def train_family(cfg: DictConfig, family: str, data: dict, out_dir: Path,
                 loglik: bool | None = None) -> tuple[object, dict]:
    """Build one family on the run's backbone (its log-likelihood features set to `loglik`, unless
    None) and train it; return it and what it trained on."""
    fam = family_config(cfg, family)
    if loglik is not None:
        fam = derive_config(fam, backbone={"lm_logprobs": loglik})
    set_seed(cfg.seed)
    rm = instantiate(fam.model)  # the family's YAML nests the run's backbone (`backbone: ${backbone}`)
    fmt = training_format(rm, fam.train)
    if fmt is None:
        return rm.eval(), {"trained_on": "nothing", "train_s": 0.0}
    if fmt not in data:
        data[fmt] = load_data(cfg.data, fmt)
    train_s = train_rm(rm, fam.trainer, cfg.logger, data[fmt].train, out_dir / "checkpoints" / family)
    return rm, {"trained_on": f"{fmt} ({len(data[fmt].train)})", "train_s": train_s}


def pairwise_columns(rm, data: RunData) -> tuple[dict, list[dict], np.ndarray]:
    """Accuracy, ECE and Brier per eval set (an ensemble's members standardised and the temperature
    fitted on the validation pairs first): as columns "<metric>_<set>", and as rows of the long
    table (one per set: its level and wording group split out); and P(chosen preferred) on the
    first set, for the reliability diagram."""
    standardize_ensemble(rm, data.calibration)
    calibrate(rm, data.calibration)
    columns, long, first = {}, [], None
    for name, pairs in data.evals.items():
        scores = score_pairs(rm, pairs)
        report = pairwise_report(scores)
        columns.update({f"{key}_{name}": report[key] for key in ("accuracy", "ece", "brier")})
        level, _, wording = name.partition("/")
        long.append({"eval_set": name, "level": level, "wording": wording or "training",
                     **{key: report[key] for key in ("accuracy", "ece", "brier")}})
        first = scores.p_chosen if first is None else first
    return columns, long, first


def policy_pools(cfg: DictConfig) -> dict:
    """One pool of N policy samples per held-out problem, with gold rewards and final answers."""
    exp = cfg.experiment
    wordings = exp.get("pool_templates") or cfg.data.get("templates") or ["bare"]
    task = arithmetic_tasks(cfg.data, exp.split, "eval", wordings)[0]
    problems = arithmetic.generate(exp.n_problems, exp.test_seed, task)["pairwise"]
    prompts = [p.prompt for p in problems]
    policy = instantiate(exp.policy)
    pools = generate_cached(policy, prompts, exp.n_candidates, seed=cfg.seed + 7, cache_dir=exp.get("cache_dir"))
    gold = [[arithmetic.gold_reward(p, s) for s in pool] for p, pool in zip(prompts, pools)]
    answers = [[arithmetic.final_answer(s) for s in pool] for pool in pools]
    return {"prompts": prompts, "pools": pools, "gold": gold, "answers": answers, "policy": policy.name}


def score_pools(rm, pools: dict) -> tuple[list, float]:
    """Score every candidate in one call; per-pool outputs and responses scored per second."""
    flat_prompts = [p for p, pool in zip(pools["prompts"], pools["pools"]) for _ in pool]
    flat = [s for pool in pools["pools"] for s in pool]
    start = time.perf_counter()
    out = rm.score(flat_prompts, flat, progress=len(flat) > 2000)
    seconds = time.perf_counter() - start
    return split_output(out, [len(pool) for pool in pools["pools"]]), len(flat) / seconds


def selection_values(outputs: list, pools: dict, exp: DictConfig) -> tuple[dict[str, np.ndarray], dict]:
    """{rule: 'p n' best-of-n gold value per problem} for the rules of `exp.rules` this RM supports,
    and {rule: 'n' KL(best-of-n || pool) averaged over problems}, exact on each pool's distinct texts."""
    ns = list(exp.ns)
    usable = [r for r in exp.rules if r == "weighted_vote" or r in available_rules(outputs[0])]
    values = {rule: np.zeros((len(outputs), len(ns))) for rule in usable}
    kl = {rule: np.zeros((len(outputs), len(ns))) for rule in usable if rule != "weighted_vote"}
    for i, (out, gold, answers) in enumerate(zip(outputs, pools["gold"], pools["answers"])):
        ranked = selection_scores(out, [r for r in usable if r != "weighted_vote"], exp.penalty, exp.uwo_lambda)
        for rule, scores in ranked.items():
            values[rule][i] = [best_of_n_expectation(scores, gold, n) for n in ns]
            kl[rule][i] = [empirical_bon_kl(text_mean_scores(scores, pools["pools"][i]), pools["pools"][i], n)
                           for n in ns]
        if "weighted_vote" in values:
            w = vote_weights(out)
            values["weighted_vote"][i] = [majority_vote_expectation(answers, gold, n, weights=w, seed=i) for n in ns]
    return values, {rule: v.mean(axis=0) for rule, v in kl.items()}


def text_mean_scores(scores, texts) -> np.ndarray:
    """Each candidate's score replaced by the mean over the candidates with the same text: a model
    scores one text the same up to float error of its batch, and the KL groups texts."""
    scores = np.asarray(scores, dtype=np.float64)
    groups: dict[str, list[int]] = {}
    for j, text in enumerate(texts):
        groups.setdefault(text, []).append(j)
    out = scores.copy()
    for members in groups.values():
        out[members] = scores[members].mean()
    return out


def baseline_values(pools: dict, ns: list[int]) -> dict[str, np.ndarray]:
    """'p n' per problem for majority vote, a random candidate and the oracle (best gold of n)."""
    out = {name: np.zeros((len(pools["gold"]), len(ns))) for name in BASELINES}
    for i, (gold, answers) in enumerate(zip(pools["gold"], pools["answers"])):
        out["majority_vote"][i] = [majority_vote_expectation(answers, gold, n, seed=i) for n in ns]
        out["random"][i] = np.mean(gold)
        out["random_text"][i] = distinct_random_curve(pools["pools"][i], gold, ns)
        out["oracle"][i] = [best_of_n_expectation(gold, gold, n) for n in ns]
    return out


def summarise(values: dict[str, np.ndarray], ns: list[int], resamples: int, seed: int) -> tuple[list, dict]:
    """Selection rows {method, bo<n>: mean over problems} and 95% bootstrap bands over problems."""
    rows, bands = [], {}
    for method, per_problem in values.items():
        rows.append({"method": method, **{f"bo{n}": float(per_problem[:, j].mean()) for j, n in enumerate(ns)}})
        bands[method] = [metrics.bootstrap_interval(np.mean, per_problem[:, j], n_resamples=resamples, seed=seed)
                         if len(per_problem) > 1 else (float("nan"), float("nan")) for j in range(len(ns))]
    return rows, bands


def evaluate_family(cfg: DictConfig, family: str, data: dict, pools: dict, out_dir: Path,
                    loglik: bool | None = None, name: str | None = None) -> tuple:
    """Train (or not) one family (with the log-likelihood features `loglik`, unless None), then its
    table row, its rows of the long pairwise table, reliability curve and best-of-n values."""
    exp, name = cfg.experiment, name or family
    rm, info = train_family(cfg, family, data, out_dir, loglik)
    columns, long, p_chosen = pairwise_columns(rm, data["pairwise"])
    outputs, per_s = score_pools(rm, pools)
    values, kl = selection_values(outputs, pools, exp)
    if exp.save_models:
        rm.save_pretrained(out_dir / "models" / name)
    argmax = values["argmax"].mean(axis=0) if "argmax" in values else [float("nan")] * len(exp.ns)
    ll = "n/a" if loglik is None else ("on" if loglik else "off")
    row = {"family": name, "loglik": ll, "trained_on": info["trained_on"], **columns,
           **{f"bo{n}": float(v) for n, v in zip(exp.ns, argmax)},
           "responses_per_s": per_s, "train_s": info["train_s"]}
    long = [{"family": family, "loglik": ll, **r} for r in long]
    print(f"{name}: trained on {info['trained_on']} in {info['train_s']:.1f} s; scored {per_s:.0f} responses/s; "
          f"best-of-{exp.ns[-1]} {row[f'bo{exp.ns[-1]}']:.3f}", flush=True)
    return row, long, p_chosen, {f"{name}/{rule}": v for rule, v in values.items()}, {
        f"{name}/{rule}": v for rule, v in kl.items()}


def run(cfg: DictConfig, out_dir: Path) -> dict:
    """Every family, the baselines, the report files; returns {"rows", "selection", ...}."""
    exp = cfg.experiment
    check_experiment_sizes(exp)
    unknown = [r for r in exp.rules if r not in (*SELECTION_RULES, "weighted_vote")]
    if unknown:
        raise ValueError(f"experiment.rules: {unknown[0]!r} is not one of {(*SELECTION_RULES, 'weighted_vote')}")
    families = chosen_families(exp)
    data = {"pairwise": load_data(cfg.data, "pairwise")}
    pools = policy_pools(cfg)
    pass_rate = float(np.mean(pools["gold"]))
    print(f"{len(families)} families: {families}; policy pass rate {pass_rate:.3f}", flush=True)
    rows, pairwise, curves, values, kls = [], [], {}, {}, {}
    for family in families:
        variants = loglik_variants(cfg, family)
        for loglik in variants:
            name = variant_name(family, loglik, variants)
            row, long, curves[name], family_values, family_kl = evaluate_family(cfg, family, data, pools, out_dir,
                                                                                loglik, name)
            kls.update(family_kl)
            rows.append(row)
            pairwise += long
            values.update(family_values)
    values.update(baseline_values(pools, list(exp.ns)))
    selection, bands = summarise(values, list(exp.ns), exp.bootstrap_resamples, cfg.seed)
    for row in selection:  # the exact KL(best-of-n || policy) on the pools, where a ranking defines it
        row.update({f"kl{n}": float(v) for n, v in zip(exp.ns, kls.get(row["method"], [float("nan")] * len(exp.ns)))})
    extra = {"selection": selection, "pairwise": pairwise, "bootstrap_95": {m: dict(zip(map(str, exp.ns), b)) for m, b in bands.items()},
             "policy_pass_rate": pass_rate, "n_problems": len(pools["prompts"]), "n_candidates": exp.n_candidates,
             "families": families}
    table = write_tables(out_dir, rows, selection, extra)
    first_split = next(iter(data["pairwise"].evals))
    plot_reliability(out_dir / "reliability.png", curves, title=f"Reliability on arithmetic ({first_split})")
    plot_best_of_n(out_dir / "best_of_n.png", selection, bands, list(exp.ns), f"policy {pools['policy']}")
    plot_against_kl(out_dir / "best_of_n_kl.png", selection, kls, list(exp.ns))
    log_study(cfg, out_dir, {"families": rows, "selection": selection},
              {"policy_pass_rate": pass_rate, **{row["family"]: row for row in rows}})
    print(f"\n{table}\n\npolicy pass rate {pass_rate:.4f}; written to {out_dir}", flush=True)
    return {"rows": rows, **extra}


def write_tables(out_dir: Path, rows: list[dict], selection: list[dict], extra: dict) -> str:
    """metrics.json/.csv (families), selection.csv, pairwise.csv, results.md (the families with their
    accuracies, the selection rules, and every evaluation set's accuracy, ECE and Brier); return
    the Markdown."""
    write_report(out_dir, rows, extra)
    write_csv(out_dir / "selection.csv", selection)
    write_csv(out_dir / "pairwise.csv", extra["pairwise"])
    brief = [{k: v for k, v in row.items() if not k.startswith(("ece_", "brier_"))} for row in rows]
    table = (f"## Reward models\n\n{markdown_table(brief)}\n\n## Best-of-n selection "
             f"(policy pass rate {extra['policy_pass_rate']:.4f})\n\n{markdown_table(selection)}\n\n"
             f"## Every evaluation set\n\n{markdown_table(extra['pairwise'])}")
    (out_dir / "results.md").write_text(table + "\n")
    return table


def plot_best_of_n(path: Path, selection: list[dict], bands: dict, ns: list[int], title: str) -> None:
    """Best-of-n accuracy against n with 95% bootstrap bands: argmax of every RM and the
    baselines on the left, the other selection rules and the baselines on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    palette = plt.get_cmap("tab20").colors
    base_style = {"oracle": ("black", "--"), "random": ("grey", ":"), "majority_vote": ("saddlebrown", "-.")}
    for i, row in enumerate(selection):
        method = row["method"]
        color, style = base_style.get(method, (palette[i % len(palette)], "-"))
        panels = axes if method in BASELINES else [axes[0] if method.endswith("/argmax") else axes[1]]
        lo, hi = np.asarray(bands[method]).T
        for ax in panels:
            ax.plot(ns, [row[f"bo{n}"] for n in ns], style, color=color, marker="o", markersize=3,
                    label=method.removesuffix("/argmax"))
            ax.fill_between(ns, lo, hi, color=color, alpha=0.1)
    for ax, name in zip(axes, ("argmax of each RM", "other selection rules")):
        ax.set(xscale="log", xlabel="n (candidates)", title=f"{name}, {title}")
        ax.minorticks_off()
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes[0].set_ylabel("accuracy of the selected solution (95% bootstrap band)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_against_kl(path: Path, selection: list[dict], kls: dict, ns: list[int]) -> None:
    """Best-of-n accuracy of each variant's argmax against KL(best-of-n || policy): on the left the
    exact KL computed from the pool (repeated texts make it far smaller than the bound), on the
    right the analytical bound log n - (n-1)/n; the baselines on the bound's axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    palette = plt.get_cmap("tab20").colors
    bound = [bon_kl(n) for n in ns]
    for i, row in enumerate(selection):
        method = row["method"]
        ys = [row[f"bo{n}"] for n in ns]
        if method.endswith("/argmax") and method in kls:
            color = palette[i % len(palette)]
            axes[0].plot(kls[method], ys, "-o", color=color, markersize=3, label=method.removesuffix("/argmax"))
            axes[1].plot(bound, ys, "-o", color=color, markersize=3, label=method.removesuffix("/argmax"))
        elif method in BASELINES:
            axes[1].plot(bound, ys, ":", color="grey" if method.startswith("random") else "black", label=method)
    axes[0].set(xlabel="KL(best-of-n || policy), exact on the pool (nats)", title="against the pool's KL")
    axes[1].set(xlabel="log n - (n-1)/n (nats, an upper bound)", title="against the analytical bound")
    axes[0].set_ylabel("accuracy of the selected solution")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

"""Best-of-n overoptimisation with a synthetic gold RM (Gao et al. 2022, Coste et al. 2023).

`python -m experiments.run experiment=bon_overoptimization`

1. Gold. `experiment.gold.kind=rm` (the faithful setup, default): a scalar RM on the run's
   backbone trained on `gold.n_pairs` clean task pairs (correct vs one injected error); its reward
   is continuous, prefers right solutions and orders wrong ones by its own judgement. `truth`: the
   arithmetic ground truth made continuous (`truth_reward`), for runs with no gold training.
2. Labels. Two distinct policy samples per training problem; the gold labels each pair by
   Bradley-Terry sampling, P(a preferred) = sigmoid((g_a - g_b) / label_temperature), seeded.
3. Proxies. A scalar RM per size of `experiment.proxies` (a backbone and head width) and per
   amount of `experiment.n_labels` (the first n labels: nested data, as Gao's data sweeps), and one
   ensemble (`experiment.ensemble`, Coste et al. 2023: K members sharing a backbone).
4. Best-of-n. One pool of N policy samples per held-out problem; for n = 1, 2, 4, ..., N the
   exact expected proxy and gold reward of best-of-n over n-subsets of the pool, against
   d = sqrt(KL). `experiment.kl=pool` (default): the exact KL(best-of-n || pool) of each pool,
   mean over problems (`pool_kl`); `bound`: log n - (n - 1)/n, which only bounds it: the pools
   repeat texts (every right sample is one string), so the true KL is far smaller. Both are
   plotted (a row each) and written per point; the fit of R(d) = d (alpha - beta d) to the gold
   gain (gold minus best-of-1) uses `experiment.kl`. The ensemble selects by its mean, its worst
   member (WCO) and UWO.
5. Random baselines: a random score per candidate (the pool mean at every n) and one per distinct
   text (`distinct_random_curve`), the fair baseline for rankers that score texts, in gold reward
   and in pass rate, over the same n-subsets.

Writes metrics.json/.csv (a row per proxy and selection rule), curves.csv (every point),
results.md, overoptimization.png and coste.png. Legend: p problems, c candidates, n best-of-n sizes.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig
from transformers import set_seed

from experiments.common import derive_config, experiment_task, group_config, log_study, train_rm
from nexus import metrics
from nexus.tasks import arithmetic
from nexus.data.formats import PairwiseExample
from nexus.evaluation import pairwise_report, score_pairs
from nexus.reporting import markdown_table, write_csv, write_report
from nexus.sampling import generate_cached
from nexus.sampling.best_of_n import selection_scores, split_output
from nexus.sampling.overoptimization import (bon_curves, bradley_terry_labels, fit_gao_bon, gao_bon, pool_kl,
                                             power_of_two_ns, random_baselines, rises_then_falls, sqrt_kl)

def truth_reward(prompt: str, response: str) -> float:
    """The arithmetic ground truth made continuous: the fraction of steps right up to the first
    wrong one, minus log(1 + |final answer - true answer|) (no final answer: off by |answer| + 1)."""
    operands, operators = arithmetic.parse_prompt(prompt)
    labels = arithmetic.label_steps(prompt, arithmetic.parse_steps(response))
    _, answer = arithmetic.solve(operands, operators)
    final = arithmetic.final_answer(response)
    miss = abs(final - answer) if final is not None else abs(answer) + 1
    return sum(labels) / len(operators) - math.log1p(miss)


def train_variant(cfg: DictConfig, kind: str, parts: list, pairs: list, out_dir: Path, name: str,
             seed: int) -> tuple:
    """Build a `kind` RM (a file of the `model` group), its random parts (head; a tiny backbone)
    initialised from `seed`, and train it on `pairs`.

    `parts` are dicts of `backbone` (an option of the backbone group; null: the run's), `model`
    (fields over the model YAML) and `trainer` (fields over the run's trainer), merged in order.
    """
    rm_cfg = derive_config(cfg, {"model": group_config("model", kind)})
    for part in parts:
        backbone = {"backbone": group_config("backbone", part["backbone"])} if part.get("backbone") else {}
        rm_cfg = derive_config(rm_cfg, backbone, model=part.get("model"), trainer=part.get("trainer"))
    if "seed" in rm_cfg.backbone:
        rm_cfg.backbone.seed = seed
    set_seed(seed)
    rm = instantiate(rm_cfg.model)
    train_s = train_rm(rm, rm_cfg.trainer, cfg.logger, pairs, out_dir / "checkpoints" / name)
    info = {"backbone": rm_cfg.backbone.name_or_path, "params": sum(p.numel() for p in rm.parameters()),
            "train_s": train_s}
    return rm, info


def make_gold(cfg: DictConfig, out_dir: Path) -> tuple:
    """The gold reward `(prompts, responses) -> 'b' array` and what describes it."""
    gold = cfg.experiment.gold
    if gold.kind == "truth":
        return (lambda prompts, responses: np.array([truth_reward(p, r) for p, r in zip(prompts, responses)]),
                {"gold": "truth"})
    if gold.kind != "rm":
        raise ValueError(f"experiment.gold.kind={gold.kind!r}: expected 'rm' or 'truth'")
    clean = arithmetic.generate(gold.n_pairs, cfg.data.train_seed, experiment_task(cfg, "rm"))
    # Another head init than the proxies': they must learn the gold's judgements from its labels,
    # not inherit them from a shared random initialisation.
    rm, info = train_variant(cfg, "scalar", [gold], clean["pairwise"], out_dir, "gold", seed=cfg.seed + 1)
    held_out = arithmetic.generate(gold.n_eval, cfg.data.eval_seed, experiment_task(cfg, "eval"))
    accuracy = pairwise_report(score_pairs(rm, held_out["pairwise"]))["accuracy"]
    if cfg.experiment.save_gold:
        rm.save_pretrained(out_dir / "gold")
    print(f"gold RM: {info['params']} parameters, trained on {gold.n_pairs} clean pairs in {info['train_s']:.0f} s; "
          f"accuracy {accuracy:.3f} on {gold.n_eval} held-out task pairs", flush=True)

    def score(prompts: list[str], responses: list[str]) -> np.ndarray:
        return rm.score(prompts, responses, progress=len(prompts) > 4000).rewards.double().numpy()

    return score, {"gold": "rm", "gold_params": info["params"], "gold_task_accuracy": accuracy,
                   "gold_train_s": info["train_s"]}


def labelled_pairs(cfg: DictConfig, policy, gold) -> tuple[list[PairwiseExample], dict]:
    """Per training problem the first two distinct of `pair_draws` policy samples, labelled by
    Bradley-Terry sampling from the gold; a problem with no two distinct samples is skipped (warned)."""
    exp = cfg.experiment
    prompts = [p.prompt for p in arithmetic.generate(max(exp.n_labels), exp.train_seed,
                                                      experiment_task(cfg, "rm"))["pairwise"]]
    draws = generate_cached(policy, prompts, exp.pair_draws, seed=cfg.seed + 11, cache_dir=exp.get("cache_dir"))
    kept = [(p, *list(dict.fromkeys(d))[:2]) for p, d in zip(prompts, draws) if len(set(d)) >= 2]
    if len(kept) < len(prompts):
        warnings.warn(f"{len(prompts) - len(kept)} of {len(prompts)} training problems had no two distinct samples "
                      f"in {exp.pair_draws} draws and give no pair", stacklevel=2)
    g = gold([p for p, _, _ in kept] * 2, [a for _, a, _ in kept] + [b for _, _, b in kept])
    g_a, g_b = g[:len(kept)], g[len(kept):]
    a_wins = bradley_terry_labels(g_a, g_b, seed=cfg.seed + 13, temperature=exp.label_temperature)
    pairs = [PairwiseExample(p, a if win else b, b if win else a) for (p, a, b), win in zip(kept, a_wins)]
    decided = g_a != g_b
    info = {"label_pairs": len(pairs), "label_disagrees_with_gold": float((a_wins != (g_a > g_b))[decided].mean()),
            "mean_abs_gold_gap": float(np.abs(g_a - g_b).mean())}
    return pairs, info


def policy_pools(cfg: DictConfig, policy, gold) -> dict:
    """One pool of N samples per held-out problem, with gold rewards and correctness per candidate."""
    exp = cfg.experiment
    problems = arithmetic.generate(exp.n_problems, exp.test_seed, experiment_task(cfg, "eval"))["pairwise"]
    prompts = [p.prompt for p in problems]
    pools = generate_cached(policy, prompts, exp.n_candidates, seed=cfg.seed + 7, cache_dir=exp.get("cache_dir"))
    flat = gold([p for p, pool in zip(prompts, pools) for _ in pool], [s for pool in pools for s in pool])
    bounds = np.cumsum([0, *map(len, pools)])
    correct = [[arithmetic.gold_reward(p, s) for s in pool] for p, pool in zip(prompts, pools)]
    return {"prompts": prompts, "pools": pools, "gold": [flat[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])],
            "correct": correct}


def pool_stats(pools: dict) -> dict:
    """Pass rate, distinct candidates per pool, gold spread, and how well gold tells right from wrong."""
    gold, correct = np.concatenate(pools["gold"]), np.concatenate(pools["correct"])
    both = 0 < correct.mean() < 1
    return {"pool_pass_rate": float(correct.mean()), "pool_gold_mean": float(gold.mean()),
            "pool_gold_std": float(gold.std()), "pool_distinct": float(np.mean([len(set(p)) for p in pools["pools"]])),
            "gold_auroc_correct": metrics.auroc(gold, correct) if both else float("nan")}


def score_pools(rm, pools: dict) -> list:
    """One `RewardOutput` per pool, from a single `score` call over every candidate."""
    flat_prompts = [p for p, pool in zip(pools["prompts"], pools["pools"]) for _ in pool]
    out = rm.score(flat_prompts, [s for pool in pools["pools"] for s in pool], progress=len(flat_prompts) > 4000)
    return split_output(out, [len(pool) for pool in pools["pools"]])


def mean_spearman(scores: list, gold: list) -> float:
    """Mean within-pool Spearman correlation of proxy and gold, over pools where neither is constant."""
    values = [metrics.spearman(s, g) for s, g in zip(scores, gold) if np.ptp(s) > 0 and np.ptp(g) > 0]
    return float(np.mean(values)) if values else float("nan")


def curve_result(meta: dict, scores: list, pools: dict, ns: list, tolerance: float,
                 kl: str = "pool") -> tuple[dict, list]:
    """One proxy (or rule): its summary row (fit, peak, fall) and its points.

    `sqrt_kl` of a point is the d the fit used: `kl="pool"`, the exact KL on the pools
    (`sqrt_kl_pool`), or `"bound"`, the analytic log n - (n - 1)/n (`sqrt_kl_bound`).
    """
    proxy, gold = bon_curves(scores, pools["gold"], ns)
    d_pool, d_bound = np.sqrt(pool_kl(scores, pools["pools"], ns)), sqrt_kl(ns)
    d = d_pool if kl == "pool" else d_bound
    fit = fit_gao_bon(d, gold - gold[0])
    peak = int(np.argmax(gold))
    row = {**meta, "pool_spearman": mean_spearman(scores, pools["gold"]), "proxy_gain": float(proxy[-1] - proxy[0]),
           "gold_bo1": float(gold[0]), "gold_peak": float(gold[peak]), "peak_n": ns[peak],
           f"gold_bo{ns[-1]}": float(gold[-1]), f"kl_pool_bo{ns[-1]}": float(d_pool[-1] ** 2), "kl": kl,
           "alpha": fit.alpha, "beta": fit.beta, "r2": fit.r2, "fit_peak_sqrt_kl": fit.peak_d,
           "falls": rises_then_falls(gold, tolerance)}
    points = [{"proxy": meta["proxy"], "rule": meta["rule"], "n_labels": meta["n_labels"], "n": n, "sqrt_kl": float(x),
               "sqrt_kl_pool": float(x_pool), "sqrt_kl_bound": float(x_bound), "proxy_reward": float(p),
               "gold_reward": float(g), "gold_gain": float(g - gold[0]), "gold_fit": float(gao_bon(x, fit.alpha, fit.beta))}
              for n, x, x_pool, x_bound, p, g in zip(ns, d, d_pool, d_bound, proxy, gold)]
    return row, points


def coste_scores(out, rule: str, uwo_lambda: float) -> np.ndarray:
    """'c' what an ensemble ranks a pool by: its member mean, its worst member (WCO) or UWO."""
    if rule == "mean":
        return out.extras["member_means"].double().numpy().mean(axis=1)
    return selection_scores(out, [rule], uwo_lambda=uwo_lambda)[rule]


def scalar_proxies(cfg: DictConfig, pairs: list, pools: dict, ns: list, tolerance: float, out_dir: Path) -> tuple:
    """Every size x label amount: train a scalar proxy, best-of-n curves of proxy and gold, the fit."""
    exp = cfg.experiment
    rows, points = [], []
    for size, spec in exp.proxies.items():
        for amount in exp.n_labels:
            rm, info = train_variant(cfg, "scalar", [spec], pairs[:amount], out_dir, f"{size}_n{amount}", cfg.seed)
            meta = {"proxy": size, "rm": "scalar", "rule": "argmax", "backbone": info["backbone"],
                    "params": info["params"], "n_labels": len(pairs[:amount]), "train_s": info["train_s"]}
            row, pts = curve_result(meta, [out.rewards.double().numpy() for out in score_pools(rm, pools)],
                                    pools, ns, tolerance, exp.kl)
            rows.append(row)
            points += pts
            print(f"proxy {size} ({info['params']} params) on {row['n_labels']} labels: gold {row['gold_bo1']:.3f} -> "
                  f"peak {row['gold_peak']:.3f} at n={row['peak_n']} -> {row[f'gold_bo{ns[-1]}']:.3f}; "
                  f"alpha {row['alpha']:.3f} beta {row['beta']:.3f} R^2 {row['r2']:.3f}", flush=True)
    return rows, points


def ensemble_proxy(cfg: DictConfig, pairs: list, pools: dict, ns: list, tolerance: float, out_dir: Path) -> tuple:
    """Coste et al. 2023: one ensemble proxy (the size `ensemble.proxy`), best-of-n by each rule."""
    exp, ens = cfg.experiment, cfg.experiment.ensemble
    amount = ens.n_labels or max(exp.n_labels)
    rm, info = train_variant(cfg, "ensemble", [exp.proxies[ens.proxy], {"model": ens.model}], pairs[:amount],
                        out_dir, f"ensemble_{ens.proxy}_n{amount}", cfg.seed)
    outputs = score_pools(rm, pools)
    rows, points = [], []
    for rule in ens.rules:
        meta = {"proxy": ens.proxy, "rm": f"ensemble (K={rm.n_members})", "rule": rule, "backbone": info["backbone"],
                "params": info["params"], "n_labels": len(pairs[:amount]), "train_s": info["train_s"]}
        scores = [coste_scores(out, rule, ens.uwo_lambda) for out in outputs]
        row, pts = curve_result(meta, scores, pools, ns, tolerance, exp.kl)
        rows.append(row)
        points += pts
        print(f"ensemble K={rm.n_members} by {rule}: gold peak {row['gold_peak']:.3f} at n={row['peak_n']} -> "
              f"{row[f'gold_bo{ns[-1]}']:.3f}; alpha {row['alpha']:.3f} beta {row['beta']:.3f}", flush=True)
    return rows, points


def check_config(exp: DictConfig) -> None:
    """Refuse names and sizes the study cannot use, naming the key."""
    if exp.kl not in ("pool", "bound"):
        raise ValueError(f"experiment.kl={exp.kl!r}: expected 'pool' or 'bound'")
    if not exp.proxies or not exp.n_labels or min(exp.n_labels) < 1:
        raise ValueError(f"experiment.proxies and experiment.n_labels (>= 1 each) must be non-empty: "
                         f"{list(exp.proxies or [])}, {list(exp.n_labels or [])}")
    if exp.ensemble is not None:
        if exp.ensemble.proxy not in exp.proxies:
            raise ValueError(f"experiment.ensemble.proxy={exp.ensemble.proxy!r}: expected one of {list(exp.proxies)}")
        unknown = [r for r in exp.ensemble.rules if r not in ("mean", "worst_case", "uwo")]
        if unknown:
            raise ValueError(f"experiment.ensemble.rules: {unknown[0]!r} is not one of mean, worst_case, uwo")


def random_baseline_stats(pools: dict, ns: list) -> dict:
    """The random baselines per candidate and per distinct text, in gold reward and pass rate ('n' lists)."""
    gold = random_baselines(pools["pools"], pools["gold"], ns)
    right = random_baselines(pools["pools"], pools["correct"], ns)
    return {"random_gold_per_sample": float(gold["per_sample"][0]), "random_gold_per_text": gold["per_text"].tolist(),
            "random_pass_per_sample": float(right["per_sample"][0]), "random_pass_per_text": right["per_text"].tolist()}


def run(cfg: DictConfig, out_dir: Path) -> dict:
    """Gold, labels, pools, every proxy, the report files; returns {"rows", "curves", ...}."""
    exp = cfg.experiment
    check_config(exp)
    start = time.perf_counter()
    ns = power_of_two_ns(exp.n_candidates)
    policy = instantiate(exp.policy)
    gold, gold_info = make_gold(cfg, out_dir)
    pairs, label_info = labelled_pairs(cfg, policy, gold)
    pools = policy_pools(cfg, policy, gold)
    stats = {**pool_stats(pools), **random_baseline_stats(pools, ns)}
    print(f"{len(pairs)} gold-labelled pairs ({label_info['label_disagrees_with_gold']:.3f} disagree with the gold's "
          f"order); pools {len(pools['prompts'])} x {exp.n_candidates}, pass rate {stats['pool_pass_rate']:.3f}, "
          f"{stats['pool_distinct']:.1f} distinct per pool; random per distinct text at n={ns[-1]}: gold "
          f"{stats['random_gold_per_text'][-1]:.3f}, pass rate {stats['random_pass_per_text'][-1]:.3f}", flush=True)
    tolerance = exp.fall_tolerance * stats["pool_gold_std"]
    rows, points = scalar_proxies(cfg, pairs, pools, ns, tolerance, out_dir)
    if exp.ensemble is not None:
        more_rows, more_points = ensemble_proxy(cfg, pairs, pools, ns, tolerance, out_dir)
        rows, points = rows + more_rows, points + more_points
    extra = {**gold_info, **label_info, **stats, "ns": ns, "sqrt_kl": sqrt_kl(ns).tolist(), "kl": exp.kl,
             "n_problems": len(pools["prompts"]), "n_candidates": exp.n_candidates, "fall_tolerance": tolerance,
             "wall_s": time.perf_counter() - start}
    table = write_outputs(out_dir, rows, points, extra)
    plot_overoptimization(out_dir / "overoptimization.png", rows, points, f"gold: {gold_info['gold']}", extra)
    plot_coste(out_dir / "coste.png", rows, points)
    fits = {f"{r['proxy']}/n{r['n_labels']}/{r['rule']}": {k: r[k] for k in ("alpha", "beta", "r2", "falls")}
            for r in rows}
    log_study(cfg, out_dir, {"metrics": rows, "curves": points}, {**extra, "fits": fits})
    print(f"\n{table}\n\nwritten to {out_dir} in {extra['wall_s']:.0f} s", flush=True)
    return {"rows": rows, "curves": points, **extra}


def baseline_rows(extra: dict) -> list[dict]:
    """One row per n: the analytic KL bound and both random baselines, in gold reward and pass rate."""
    return [{"n": n, "kl_bound": float(d**2), "gold: random candidate": extra["random_gold_per_sample"],
             "gold: random text": g, "pass: random candidate": extra["random_pass_per_sample"], "pass: random text": c}
            for n, d, g, c in zip(extra["ns"], extra["sqrt_kl"], extra["random_gold_per_text"],
                                  extra["random_pass_per_text"])]


def write_outputs(out_dir: Path, rows: list[dict], points: list[dict], extra: dict) -> str:
    """metrics.json/.csv (rows), curves.csv (points), results.md (setup and tables); return the Markdown."""
    write_report(out_dir, rows, extra)
    write_csv(out_dir / "curves.csv", points)
    setup = (f"Gold: {extra['gold']}; {extra['label_pairs']} Bradley-Terry labelled pairs "
             f"({extra['label_disagrees_with_gold']:.3f} disagree with the gold's order). Pools: {extra['n_problems']} "
             f"problems x {extra['n_candidates']}, pass rate {extra['pool_pass_rate']:.3f}, "
             f"{extra['pool_distinct']:.1f} distinct texts per pool, gold AUROC for correctness "
             f"{extra['gold_auroc_correct']:.3f}. alpha, beta, R^2: fit of R(d) = d (alpha - beta d) to the gold gain, "
             f"d = sqrt(KL) with KL {'exact on the pools' if extra['kl'] == 'pool' else 'the analytic bound'} "
             f"(kl_pool_bo{extra['ns'][-1]}: the exact KL at n = {extra['ns'][-1]}).")
    baselines = ("Random baselines over the same n-subsets: a random score per candidate (the pool mean) and "
                 "one per distinct text (the fair baseline for a ranker that scores texts); kl_bound = log n - (n-1)/n.")
    table = f"{setup}\n\n{markdown_table(rows)}\n\n{baselines}\n\n{markdown_table(baseline_rows(extra))}"
    (out_dir / "results.md").write_text(f"# bon_overoptimization\n\n{table}\n")
    return table


# The two x axes of every plot: a row each.
X_AXES = (("sqrt_kl_pool", "d = sqrt(KL(best-of-n || pool)), exact per pool"),
          ("sqrt_kl_bound", "d = sqrt(log n - (n - 1)/n), the analytic bound"))


def _series(points: list[dict], proxy: str, rule: str, n_labels: int, x_key: str) -> tuple[np.ndarray, ...]:
    """'n' x (the point field `x_key`), proxy gain and gold gain of one curve."""
    pts = [p for p in points if (p["proxy"], p["rule"], p["n_labels"]) == (proxy, rule, n_labels)]
    x = np.array([p[x_key] for p in pts])
    proxy_reward = np.array([p["proxy_reward"] for p in pts])
    return x, proxy_reward - proxy_reward[0], np.array([p["gold_gain"] for p in pts])


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, axes, ns: list, path: Path) -> None:
    """Shared axes: a row per entry of `X_AXES`, n above the bound's row (where n fixes d), a zero
    line, legends; save."""
    for row, (x_key, label) in zip(axes, X_AXES):
        for ax in row:
            ax.axhline(0, color="grey", linewidth=0.6)
            if x_key == "sqrt_kl_bound":
                top = ax.secondary_xaxis("top")
                top.set_xticks(sqrt_kl(ns), [str(n) for n in ns], fontsize=6)
                top.set_xlabel("n", fontsize=8)
            ax.set_xlabel(label, fontsize=8)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_overoptimization(path: Path, rows: list[dict], points: list[dict], title: str, extra: dict) -> None:
    """Per proxy size: gold gain (solid), proxy gain (dashed) and the fitted R(d) (dotted) per label
    amount, against the pools' exact KL (top row) and the analytic bound (bottom row, with the
    per-text random baseline's gold gain in grey)."""
    plt = _pyplot()
    scalar = [r for r in rows if r["rm"] == "scalar"]
    sizes = list(dict.fromkeys(r["proxy"] for r in scalar))
    fig, axes = plt.subplots(2, len(sizes), figsize=(4.6 * len(sizes), 8.4), sharey=True, squeeze=False)
    amounts = sorted({r["n_labels"] for r in scalar})
    colors = dict(zip(amounts, plt.get_cmap("viridis")(np.linspace(0.1, 0.85, len(amounts)))))
    ns = sorted({p["n"] for p in points})
    for row_axes, (x_key, _) in zip(axes, X_AXES):
        for ax, size in zip(row_axes, sizes):
            for r in [r for r in scalar if r["proxy"] == size]:
                x, proxy, gold = _series(points, size, "argmax", r["n_labels"], x_key)
                color = colors[r["n_labels"]]
                ax.plot(x, gold, "-o", color=color, markersize=3, label=f"gold, {r['n_labels']} labels")
                ax.plot(x, proxy, "--", color=color, label=f"proxy, {r['n_labels']} labels")
                if x_key == f"sqrt_kl_{r['kl']}":  # the fit lives on the axis it was fitted against
                    dense = np.linspace(0, x[-1], 100)
                    ax.plot(dense, gao_bon(dense, r["alpha"], r["beta"]), ":", color=color,
                            label=f"fit a={r['alpha']:.2f} b={r['beta']:.2f} R2={r['r2']:.2f}")
            if x_key == "sqrt_kl_bound":
                base = np.array(extra["random_gold_per_text"]) - extra["random_gold_per_sample"]
                ax.plot(sqrt_kl(ns), base, ":", color="grey", label="gold, random score per text")
            params = next(r["params"] for r in scalar if r["proxy"] == size)
            ax.set_title(f"proxy {size} ({params:,} parameters), {title}", fontsize=8)
        row_axes[0].set_ylabel("reward gain over best-of-1")
    _finish(fig, axes, ns, path)
    plt.close(fig)


def plot_coste(path: Path, rows: list[dict], points: list[dict]) -> None:
    """Ensemble proxy by mean, WCO and UWO (and the scalar proxy of that size and data): proxy and
    gold gain, against the pools' exact KL (top row) and the analytic bound (bottom row)."""
    plt = _pyplot()
    ensemble = [r for r in rows if r["rm"] != "scalar"]
    fig, axes = plt.subplots(2, 2, figsize=(10, 8.4))
    for row_axes, (x_key, _) in zip(axes, X_AXES):
        if not ensemble:
            break
        same = [r for r in rows if r["rm"] == "scalar" and r["proxy"] == ensemble[0]["proxy"]
                and r["n_labels"] == ensemble[0]["n_labels"]]
        palette = plt.get_cmap("tab10").colors
        for i, r in enumerate(same + ensemble):
            x, proxy, gold = _series(points, r["proxy"], r["rule"], r["n_labels"], x_key)
            label = f"{r['rm']} {r['rule']}"
            row_axes[0].plot(x, proxy, "-o", color=palette[i], markersize=3, label=label)
            row_axes[1].plot(x, gold, "-o", color=palette[i], markersize=3, label=f"{label} (R2 {r['r2']:.2f})")
            if x_key == f"sqrt_kl_{r['kl']}":
                dense = np.linspace(0, x[-1], 100)
                row_axes[1].plot(dense, gao_bon(dense, r["alpha"], r["beta"]), ":", color=palette[i])
        first = ensemble[0]
        row_axes[0].set_title(f"proxy score of the chosen, {first['proxy']}, {first['n_labels']} labels", fontsize=8)
        fitted = " (dotted: fitted R(d))" if x_key == f"sqrt_kl_{first['kl']}" else ""
        row_axes[1].set_title(f"gold reward of the chosen{fitted}", fontsize=8)
        row_axes[0].set_ylabel("gain over best-of-1")
    ns = sorted({p["n"] for p in points})
    _finish(fig, axes, ns, path)
    plt.close(fig)

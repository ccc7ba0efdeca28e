"""Best-of-n overoptimisation over seeds: `python -m experiments.bon_seeds MULTIRUN_DIR`.

Reads every `bon_overoptimization` run under the directory (a `-m seed=0,1,2` sweep). Each seed
has its own gold RM, so raw gold rewards do not compare across seeds; gains over best-of-1 in
units of that seed's pool gold std do. Per proxy and selection rule: the gold gain at its peak
and at the largest n, the drop from peak to the end, the share of seeds whose curve falls
(`falls`), with 95% t-intervals over seeds; and seed-paired differences of the end gain for the
comparisons the study makes (each ensemble rule against the scalar proxy of the same size and
labels; the most against the fewest labels per proxy size). Writes bon_seeds.md, bon_seeds.json
and bon_seeds.png (mean gold gain against the pool KL, with its interval) into the directory.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from experiments.aggregate import t_interval
from nexus.reporting import markdown_table


def load_runs(root: Path) -> list[dict]:
    """Each run's metrics.json and curves.csv (rows with numbers), ordered by path."""
    runs = []
    for path in sorted(root.rglob("metrics.json")):
        metrics = json.loads(path.read_text())
        if "pool_gold_std" not in metrics:
            continue  # not a bon_overoptimization run
        with open(path.parent / "curves.csv") as f:
            curves = [{k: (v if k in ("proxy", "rule") else float(v)) for k, v in row.items()}
                      for row in csv.DictReader(f)]
        runs.append({"metrics": metrics, "curves": curves, "dir": path.parent})
    if not runs:
        raise FileNotFoundError(f"{root}: no bon_overoptimization runs (metrics.json with pool_gold_std) under it")
    return runs


def cell(values: list[float]) -> str:
    mean, lo, hi = t_interval(values)
    return f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}]" if np.isfinite(lo) else f"{mean:+.3f}"


def gains(runs: list[dict]) -> dict[tuple, dict[str, list[float]]]:
    """(proxy, rm, rule, n_labels) -> per-seed gains in pool gold stds: peak, end, drop; falls (0/1)."""
    out: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        std = run["metrics"]["pool_gold_std"]
        for row in run["metrics"]["rows"]:
            key = (row["proxy"], row["rm"], row["rule"], int(row["n_labels"]))
            end = next(v for k, v in row.items() if k.startswith("gold_bo") and k != "gold_bo1")
            out[key]["peak"].append((row["gold_peak"] - row["gold_bo1"]) / std)
            out[key]["end"].append((end - row["gold_bo1"]) / std)
            out[key]["drop"].append((row["gold_peak"] - end) / std)
            out[key]["falls"].append(float(row["falls"]))
            out[key]["spearman"].append(row["pool_spearman"])
    return out


def paired(by: dict, a: tuple, b: tuple) -> list[float] | None:
    if a in by and b in by and len(by[a]["end"]) == len(by[b]["end"]):
        return [x - y for x, y in zip(by[a]["end"], by[b]["end"])]
    return None


def report(root: Path) -> dict:
    runs = load_runs(root)
    by = gains(runs)
    rows = [{"proxy": k[0], "rm": k[1], "rule": k[2], "n_labels": k[3], "seeds": len(v["end"]),
             "spearman with gold": cell(v["spearman"]), "gold gain at peak": cell(v["peak"]),
             "gold gain at largest n": cell(v["end"]), "drop from peak": cell(v["drop"]),
             "falls (share of seeds)": f"{np.mean(v['falls']):.2f}"} for k, v in by.items()]
    comparisons = []
    for (proxy, rm, rule, labels) in by:
        if rm != "scalar":
            diff = paired(by, (proxy, rm, rule, labels), (proxy, "scalar", "argmax", labels))
            if diff:
                comparisons.append({"comparison": f"{rm} {rule} - scalar ({proxy}, {labels} labels)",
                                    "end gain difference": cell(diff)})
    for proxy in sorted({k[0] for k in by}):
        labels = sorted(k[3] for k in by if k[0] == proxy and k[1] == "scalar")
        if len(labels) > 1:
            diff = paired(by, (proxy, "scalar", "argmax", labels[-1]), (proxy, "scalar", "argmax", labels[0]))
            if diff:
                comparisons.append({"comparison": f"{proxy}: {labels[-1]} - {labels[0]} labels",
                                    "end gain difference": cell(diff)})
    m = [r["metrics"] for r in runs]
    context = {"seeds": len(runs), "gold task accuracy": cell([x["gold_task_accuracy"] for x in m]),
               "gold AUROC for correctness": cell([x["gold_auroc_correct"] for x in m]),
               "labels disagreeing with the gold": cell([x["label_disagrees_with_gold"] for x in m]),
               "pool pass rate": cell([x["pool_pass_rate"] for x in m]),
               "random per text, end gain (pool stds)": cell(
                   [(x["random_gold_per_text"][-1] - x["random_gold_per_text"][0]) / x["pool_gold_std"] for x in m])}
    text = "\n\n".join([
        f"# bon_overoptimization over {len(runs)} seeds\n\nGains over best-of-1 in units of each seed's pool gold "
        "std; mean and 95% t-interval over seeds.", markdown_table([context]), markdown_table(rows),
        "Seed-paired differences of the gain at the largest n:", markdown_table(comparisons)])
    (root / "bon_seeds.md").write_text(text + "\n")
    (root / "bon_seeds.json").write_text(json.dumps({"context": context, "rows": rows, "comparisons": comparisons},
                                                    indent=2) + "\n")
    plot(runs, root / "bon_seeds.png")
    print(text)
    return {"context": context, "rows": rows, "comparisons": comparisons}


def plot(runs: list[dict], path: Path) -> None:
    """Mean gold gain (pool stds) against sqrt of the pool KL, per proxy and labels, with t bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[tuple, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    for run in runs:
        std = run["metrics"]["pool_gold_std"]
        series = defaultdict(list)
        for row in run["curves"]:
            key = (row["proxy"], row["rule"], int(row["n_labels"]))
            series[key].append((row["sqrt_kl_pool"], row["gold_gain"] / std))
        for key, points in series.items():
            x, y = np.array(sorted(points)).T
            curves[key].append((x, y))
    proxies = sorted({k[0] for k in curves})
    fig, axes = plt.subplots(1, len(proxies), figsize=(4.5 * len(proxies), 3.8), sharey=True, squeeze=False)
    for ax, proxy in zip(axes[0], proxies):
        for key in sorted(k for k in curves if k[0] == proxy):
            xs, ys = np.array([c[0] for c in curves[key]]), np.array([c[1] for c in curves[key]])
            bands = np.array([t_interval(ys[:, j]) for j in range(ys.shape[1])])
            label = f"{key[1]}, {key[2]} labels"
            ax.plot(xs.mean(0), bands[:, 0], marker=".", label=label)
            if len(ys) > 1:
                ax.fill_between(xs.mean(0), bands[:, 1], bands[:, 2], alpha=0.15)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(title=proxy, xlabel="sqrt KL(best-of-n || pool)")
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("gold gain over best-of-1 (pool stds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("multirun_dir", type=Path)
    return report(parser.parse_args(argv).multirun_dir)


if __name__ == "__main__":
    main()

"""The ladder's comparison over seeds: `python -m experiments.ladder_report MULTIRUN_DIR [--metric accuracy]`.

Reads the `pairwise` table (one row per RM variant and evaluation set) of every compare_rms run
under the directory, e.g. `python -m experiments.run -m experiment=compare_rms seed=0,1,2`, and
writes into it (`--merge DIR ...`: add the families of the same runs from other sweeps, paired by
seed and data size):

- ladder.md / ladder.csv: per variant (family, with or without the log-likelihood features) and
  evaluation set (level x wording group), the mean over seeds and its 95% Student-t interval;
- ladder_differences.csv: for every evaluation set and every pair of variants, the difference of
  the metric paired by run (same seed, same data), its mean and t-interval; a pair "differs" when
  the interval excludes 0. ladder.md lists the pairs that differ;
- ladder.png: the metric against the level, one line per variant with its interval, one panel
  per wording group (seen and unseen).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml

from experiments.aggregate import load_tables, t_interval
from nexus.reporting import markdown_table, write_csv

WHO = ("family", "loglik")


def _run_key(metrics: Path, index: int) -> tuple:
    """What pairs a run with its twin in another sweep: (seed, data.n_train) from the config.yaml
    beside its metrics.json, or its position among the sorted runs where there is none."""
    config = metrics.parent / "config.yaml"
    if not config.exists():
        return (index,)
    cfg = yaml.safe_load(config.read_text())
    return (cfg.get("seed"), (cfg.get("data") or {}).get("n_train"))


def _keyed_runs(root: Path, table: str) -> dict[tuple, dict[tuple, dict]]:
    runs = {}
    for i, path in enumerate(sorted(Path(root).rglob("metrics.json"))):
        rows = load_tables(path).get(table)
        if rows:
            runs[_run_key(path, i)] = {(tuple(r[c] for c in WHO), r["eval_set"]): r for r in rows}
    if not runs:
        raise FileNotFoundError(f"{root}: no metrics.json with a {table!r} table under it")
    return runs


def load_runs(root: Path, table: str = "pairwise", merge: Sequence[Path] = ()) -> list[dict[tuple, dict]]:
    """Per run: {(variant, eval_set): row} of its `table`. Each folder of `merge` holds the same
    runs (same seeds and data sizes) of other families, whose rows join their twin's, so that
    families trained in separate sweeps are compared paired by run; a variant already present
    (the same family in another configuration) is named "family (folder name)"."""
    runs = _keyed_runs(root, table)
    for other in merge:
        theirs = _keyed_runs(other, table)
        if set(theirs) != set(runs):
            raise ValueError(f"{other}: its runs (seed, data.n_train) {sorted(theirs, key=str)} are not those "
                             f"of {root}: {sorted(runs, key=str)}")
        for key, rows in theirs.items():
            for ((family, loglik), eval_set), row in rows.items():
                if ((family, loglik), eval_set) in runs[key]:
                    family = f"{family} ({Path(other).name})"
                runs[key][((family, loglik), eval_set)] = row
    return [runs[key] for key in sorted(runs, key=str)]


def _name(variant: tuple) -> str:
    family, loglik = variant
    return family if loglik == "n/a" else f"{family} (ll {loglik})"


def summary(runs: list[dict], metric: str, level: float = 0.95) -> list[dict]:
    """One row per (variant, eval_set) present in every run: mean and t-interval over runs."""
    common = set.intersection(*(set(run) for run in runs))
    out = []
    for variant, eval_set in sorted(common):
        values = [run[(variant, eval_set)][metric] for run in runs]
        mean, low, high = t_interval(values, level)
        out.append({"variant": _name(variant), "eval_set": eval_set, "n_runs": len(values),
                    metric: mean, f"{metric}_lo": low, f"{metric}_hi": high})
    return out


def differences(runs: list[dict], metric: str, level: float = 0.95) -> list[dict]:
    """Every pair of variants on every eval set: the per-run difference a - b, its mean and
    t-interval over runs, and whether that interval excludes 0."""
    common = set.intersection(*(set(run) for run in runs))
    variants = sorted({v for v, _ in common})
    sets = sorted({s for _, s in common})
    out = []
    for eval_set in sets:
        for a, b in itertools.combinations(variants, 2):
            if (a, eval_set) not in common or (b, eval_set) not in common:
                continue
            diff = [run[(a, eval_set)][metric] - run[(b, eval_set)][metric] for run in runs]
            mean, low, high = t_interval(diff, level)
            out.append({"eval_set": eval_set, "a": _name(a), "b": _name(b), "n_runs": len(diff),
                        "difference": mean, "lo": low, "hi": high,
                        "differs": bool(np.isfinite(low) and (low > 0 or high < 0))})
    return out


def plot(path: Path, rows: list[dict], metric: str) -> None:
    """The metric against the level, a line per variant with its interval, a panel per wording group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({r["eval_set"].partition("/")[2] or "training" for r in rows})
    fig, axes = plt.subplots(1, len(groups), figsize=(6.5 * len(groups), 4.8), sharey=True, squeeze=False)
    palette = plt.get_cmap("tab20").colors
    for ax, group in zip(axes[0], groups):
        mine = [r for r in rows if (r["eval_set"].partition("/")[2] or "training") == group]
        levels = sorted({r["eval_set"].partition("/")[0] for r in mine})
        for i, variant in enumerate(sorted({r["variant"] for r in mine})):
            points = {r["eval_set"].partition("/")[0]: r for r in mine if r["variant"] == variant}
            xs = [j for j, lv in enumerate(levels) if lv in points]
            ys = np.array([points[levels[j]][metric] for j in xs])
            lo = np.array([points[levels[j]][f"{metric}_lo"] for j in xs])
            hi = np.array([points[levels[j]][f"{metric}_hi"] for j in xs])
            ax.errorbar(np.array(xs) + 0.03 * (i - 5), ys, yerr=[ys - lo, hi - ys], marker="o", markersize=3,
                        capsize=2, color=palette[i % len(palette)], label=variant,
                        linestyle="--" if "ll off" in variant else "-")
        ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_xticks(range(len(levels)), levels)
        ax.set(title=f"{group} wordings", xlabel="level")
    axes[0][0].set_ylabel(f"pairwise {metric} (mean and 95% t-interval over seeds)")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(root: Path, metric: str = "accuracy", level: float = 0.95, merge: Sequence[Path] = ()) -> str:
    """Write ladder.md/.csv/.png and ladder_differences.csv into `root`; return the Markdown."""
    runs = load_runs(root, merge=merge)
    rows, diffs = summary(runs, metric, level), differences(runs, metric, level)
    write_csv(root / "ladder.csv", rows)
    write_csv(root / "ladder_differences.csv", diffs)
    (root / "ladder.json").write_text(json.dumps({"summary": rows, "differences": diffs}, indent=2) + "\n")
    plot(root / "ladder.png", rows, metric)
    wide: dict[str, dict] = {}
    for r in rows:
        half = r[f"{metric}_hi"] - r[metric]
        wide.setdefault(r["variant"], {"variant": r["variant"]})[r["eval_set"]] = (
            f"{r[metric]:.3f} ± {half:.3f}" if np.isfinite(half) else f"{r[metric]:.3f}")
    differing = [{**d, "difference": f"{d['difference']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]"}
                 for d in diffs if d["differs"]]
    text = (f"Pairwise {metric}: mean ± 95% t-interval half-width over {len(runs)} runs under {root}.\n\n"
            f"{markdown_table(list(wide.values()))}\n\n## Pairs of variants whose difference excludes 0\n\n"
            f"{markdown_table([{k: d[k] for k in ('eval_set', 'a', 'b', 'difference')} for d in differing]) if differing else 'none'}")
    (root / "ladder.md").write_text(text + "\n")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("multirun_dir", type=Path)
    parser.add_argument("--metric", default="accuracy", help="a column of the pairwise table: accuracy, ece or brier")
    parser.add_argument("--level", type=float, default=0.95)
    parser.add_argument("--merge", type=Path, nargs="+", default=[],
                        help="folders with the same runs (seeds, data sizes) of other families, compared paired by run")
    args = parser.parse_args(argv)
    print(report(args.multirun_dir, args.metric, args.level, args.merge))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

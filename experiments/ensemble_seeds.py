"""The ensemble-uncertainty study over seeds: `python -m experiments.ensemble_seeds MULTIRUN_DIR`.

Reads every `ensemble_uncertainty` run under the directory (one per seed, each with the same
variants) and reports, with 95% t-intervals over seeds:

- per (noise, variant, K) on the in-distribution set: accuracy, ECE before and after temperature
  scaling, the mistake AUROC of the predictive entropy; and the epistemic variance on the
  in-distribution and the shifted set with their ratio (shifted / in-distribution);
- seed-paired differences for the study's comparisons: K = max minus K = 1 of the same variant,
  and each variant minus `shared` at K = max (accuracy, ECE, ECE after temperature, AUROC).

The first and last of `experiment.eval_splits` in each run's config are the in-distribution and
the shifted sets. Writes ensemble_seeds.md and ensemble_seeds.json into the directory.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from experiments.aggregate import t_interval
from nexus.reporting import markdown_table

MEASURES = ("accuracy", "ece", "ece_calibrated", "auroc_entropy")


def load_runs(root: Path) -> tuple[list[dict], str, str]:
    """Each run's rows keyed by (noise, variant, k, split); and the in-distribution and shifted set names."""
    runs, splits = [], None
    for path in sorted(root.rglob("metrics.json")):
        config = path.parent / ".hydra" / "config.yaml"
        if not config.is_file():
            continue
        experiment = yaml.safe_load(config.read_text())["experiment"]
        if experiment.get("name") != "ensemble_uncertainty":
            continue
        splits = (experiment["eval_splits"][0], experiment["eval_splits"][-1])
        rows = json.loads(path.read_text())["rows"]
        runs.append({(r["noise"], r["variant"], r["k"], r["split"]): r for r in rows})
    if not runs:
        raise FileNotFoundError(f"{root}: no ensemble_uncertainty runs (metrics.json beside .hydra/config.yaml)")
    return runs, *splits


def cell(values: list[float], digits: int = 3) -> str:
    mean, lo, hi = t_interval(values)
    if lo != lo:  # one run: no interval
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def report(root: Path) -> dict:
    runs, seen, shifted = load_runs(root)
    keys = sorted({k[:3] for k in runs[0] if k[3] == seen})
    kmax = max(k[2] for k in keys)
    rows = []
    for noise, variant, k in keys:
        present = [run for run in runs if (noise, variant, k, seen) in run and (noise, variant, k, shifted) in run]
        a = [run[(noise, variant, k, seen)] for run in present]
        b = [run[(noise, variant, k, shifted)] for run in present]
        row = {"noise": noise, "variant": variant, "K": k, "seeds": len(present)}
        row.update({m: cell([r[m] for r in a]) for m in MEASURES})
        row[f"epistemic {seen}"] = cell([r["epistemic_var"] for r in a])
        row[f"epistemic {shifted}"] = cell([r["epistemic_var"] for r in b])
        if k > 1:
            row["epistemic ratio"] = cell([y["epistemic_var"] / x["epistemic_var"] for x, y in zip(a, b)], 2)
        rows.append(row)
    differences = []
    for noise, variant, k in keys:
        pairs = {}
        if k == kmax and (noise, variant, 1) in keys:
            pairs[f"{variant}: K={kmax} - K=1"] = (noise, variant, 1)
        if k == kmax and variant != "shared" and (noise, "shared", kmax) in keys:
            pairs[f"{variant} - shared, K={kmax}"] = (noise, "shared", kmax)
        for name, other in pairs.items():
            both = [run for run in runs if (noise, variant, k, seen) in run and (*other, seen) in run]
            diff = {"noise": noise, "comparison": name, "seeds": len(both)}
            diff.update({m: cell([run[(noise, variant, k, seen)][m] - run[(*other, seen)][m] for run in both])
                         for m in MEASURES})
            differences.append(diff)
    text = "\n\n".join([f"# ensemble_uncertainty over {len(runs)} seeds\n\nIn-distribution: {seen}; shifted: "
                        f"{shifted}. Mean and 95% t-interval over seeds.", markdown_table(rows),
                        f"Seed-paired differences on {seen}:", markdown_table(differences)])
    (root / "ensemble_seeds.md").write_text(text + "\n")
    out = {"in_distribution": seen, "shifted": shifted, "seeds": len(runs), "rows": rows, "differences": differences}
    (root / "ensemble_seeds.json").write_text(json.dumps(out, indent=2) + "\n")
    print(text)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("multirun_dir", type=Path)
    return report(parser.parse_args(argv).multirun_dir)


if __name__ == "__main__":
    main()

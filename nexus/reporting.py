"""Run reports: metrics as JSON and CSV, a Markdown table, and PNG plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Sequence

from nexus import metrics


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def _columns(rows: Sequence[dict]) -> list:
    """Every key of `rows`, in first-seen order (rows may differ in their keys)."""
    return list(dict.fromkeys(key for row in rows for key in row))


def markdown_table(rows: Sequence[dict]) -> str:
    """Rows of dicts -> a GitHub Markdown table (a missing cell is blank; no rows: "(no rows)")."""
    if not rows:
        return "(no rows)"
    columns = _columns(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(path: Path, rows: Sequence[dict]) -> None:
    """Rows of dicts as a CSV file, one column per key seen (no rows: an empty file)."""
    with open(path, "w", newline="") as f:
        if not rows:
            return
        writer = csv.DictWriter(f, fieldnames=_columns(rows))
        writer.writeheader()
        writer.writerows(rows)


def plot_best_of_n(path: Path, rows: Sequence[dict], ns: Sequence[int], key: str, baselines: Sequence[str],
                   xlabel: str, ylabel: str, title: str, bands: dict | None = None) -> None:
    """One line per row (`row["method"]`) through `row[f"{key}{n}"]` for n in `ns`, log-x;
    `baselines` are dashed; `bands` ({method: [(low, high) per n]}) are shaded around their lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for row in rows:
        style = "--" if row["method"] in baselines else "-"
        line, = ax.plot(ns, [row[f"{key}{n}"] for n in ns], style, marker="o", label=row["method"])
        if bands and row["method"] in bands:
            low, high = zip(*bands[row["method"]])
            ax.fill_between(ns, low, high, color=line.get_color(), alpha=0.12)
    ax.set(xscale="log", xlabel=xlabel, ylabel=ylabel, title=title)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(directory: Path, rows: Sequence[dict], extra: dict | None = None) -> str:
    """Write metrics.json, metrics.csv and results.md into `directory`; return the table."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "metrics.json").write_text(json.dumps({"rows": list(rows), **(extra or {})}, indent=2) + "\n")
    write_csv(directory / "metrics.csv", rows)
    table = markdown_table(rows)
    (directory / "results.md").write_text(table + "\n")
    return table


def plot_reliability(path: Path, curves: dict, n_bins: int = 10,
                     title: str = "Reliability of P(chosen preferred)", xlabel: str = "predicted P(preferred)") -> None:
    """Reliability diagram per named curve: a 'b' array of P(chosen preferred) (read in both
    orientations), or a (probabilities 'b', 0/1 labels 'b') tuple for pointwise predictions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    for name, curve in curves.items():
        probs, labels = curve if isinstance(curve, tuple) else metrics.both_orientations(curve)
        curve = metrics.reliability_curve(probs, labels, n_bins=n_bins)
        ece = metrics.expected_calibration_error(probs, labels, n_bins=n_bins)
        ax.plot(curve["mean_prob"], curve["mean_label"], marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.set(xlabel=xlabel, ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1), title=title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

"""One table over the runs of a Hydra multirun: `python -m experiments.aggregate MULTIRUN_DIR`.

Reads every run's metrics.json under the directory (each table in it: "rows", and any other
list of rows such as compare_rms's "selection"), groups the rows that describe the same thing
across runs, and writes aggregate.md, aggregate.csv (and aggregate_<table>.csv for the other
tables) and aggregate.json into the directory: per numeric column the mean over runs and its
95% Student-t interval, mean +- t_{0.975, r-1} s / sqrt(r) over r runs (none for r = 1).

Rows are the same thing when their key columns agree (by default the text columns, e.g. family
or method; `--keys` adds numeric ones such as an ensemble size) and their runs share the same
overrides apart from `seed` (read from each run's .hydra/overrides.yaml), so a sweep over
seeds and another setting gives one group per setting.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml
from scipy import stats

from nexus.reporting import markdown_table

SWEEP_KEYS_IGNORED = ("seed",)


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the Student-t interval for the mean; NaN bounds for fewer than 2 values.

    Raises:
        ValueError: `values` is empty.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("t_interval: no values")
    mean = float(x.mean())
    if x.size < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf((1 + level) / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def run_setting(run_dir: Path) -> str:
    """The run's overrides other than the seed, e.g. "experiment=compare_rms" ("" without .hydra)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return ""
    overrides = yaml.safe_load(path.read_text()) or []
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in SWEEP_KEYS_IGNORED]
    return ",".join(kept)


def load_tables(path: Path) -> dict[str, list[dict]]:
    """Every table (a non-empty list of dicts) in one metrics.json."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: malformed JSON: {err.msg}") from err
    return {name: value for name, value in data.items()
            if isinstance(value, list) and value and all(isinstance(r, dict) for r in value)}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def group_rows(runs: list[tuple[str, str, list[dict]]], keys: Sequence[str]) -> dict[tuple, list[dict]]:
    """{(setting, key values): one row per run} from (run name, setting, rows) triples.

    Raises:
        ValueError: two rows of one run fall in the same group (the key columns do not tell them
            apart: name more with `keys`).
    """
    groups: dict[tuple, list[dict]] = {}
    for name, setting, rows in runs:
        seen = set()
        for i, row in enumerate(rows):
            columns = [c for c in row if isinstance(row[c], (str, bool)) or c in keys]
            key = (setting, tuple((c, row[c]) for c in columns))
            if key in seen:
                raise ValueError(f"{name}: rows[{i}] has the same key columns {columns} as an earlier row; "
                                 "pass --keys with the numeric columns that tell rows apart")
            seen.add(key)
            groups.setdefault(key, []).append(row)
    return groups


def aggregate_table(runs: list[tuple[str, str, list[dict]]], keys: Sequence[str] = (),
                    level: float = 0.95) -> list[dict]:
    """One row per group: its key columns, `setting` (where runs differ in more than the seed),
    `n_runs`, and per numeric column `<col>` (mean), `<col>_lo` and `<col>_hi`."""
    settings = {setting for _, setting, _ in runs}
    out = []
    for (setting, key), rows in group_rows(runs, keys).items():
        row = {**({"setting": setting} if len(settings) > 1 else {}), **dict(key), "n_runs": len(rows)}
        numeric = dict.fromkeys(c for r in rows for c in r if c not in dict(key) and _is_number(r[c]))
        for column in numeric:
            values = [r[column] for r in rows if _is_number(r.get(column))]
            mean, low, high = t_interval(values, level) if values else (float("nan"),) * 3
            row.update({column: mean, f"{column}_lo": low, f"{column}_hi": high})
        out.append(row)
    return out


def readable(rows: list[dict]) -> list[dict]:
    """Rows for Markdown: "mean ± half-width" in one cell per column."""
    out = []
    for row in rows:
        cells = {}
        for column, value in row.items():
            if column.endswith(("_lo", "_hi")) and column[:-3] in row:
                continue
            high = row.get(f"{column}_hi")
            cells[column] = (f"{value:.4g} ± {high - value:.2g}" if _is_number(high) and math.isfinite(high)
                             else value)
        out.append(cells)
    return out


def aggregate(root: Path, keys: Sequence[str] = (), level: float = 0.95) -> dict[str, list[dict]]:
    """Aggregate every table of every metrics.json under `root`; write the files; return the tables."""
    paths = sorted(p for p in Path(root).rglob("metrics.json"))
    if not paths:
        raise FileNotFoundError(f"{root}: no metrics.json in any run directory under it")
    runs: dict[str, list[tuple[str, str, list[dict]]]] = {}
    for path in paths:
        for table, rows in load_tables(path).items():
            runs.setdefault(table, []).append((str(path.parent), run_setting(path.parent), rows))
    tables = {name: aggregate_table(table_runs, keys, level) for name, table_runs in runs.items()}
    write(Path(root), tables, len(paths), level)
    return tables


def write(root: Path, tables: dict[str, list[dict]], n_runs: int, level: float) -> str:
    """aggregate.json, aggregate[_<table>].csv and aggregate.md into `root`; return the Markdown."""
    (root / "aggregate.json").write_text(json.dumps(tables, indent=2) + "\n")
    parts = [f"Mean and {level:.0%} t-interval over {n_runs} runs under {root}."]
    for name, rows in tables.items():
        with open(root / ("aggregate.csv" if name == "rows" else f"aggregate_{name}.csv"), "w", newline="") as f:
            columns = list(dict.fromkeys(c for r in rows for c in r))
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        parts.append(f"## {name}\n\n{markdown_table(readable(rows))}")
    text = "\n\n".join(parts)
    (root / "aggregate.md").write_text(text + "\n")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("multirun_dir", type=Path, help="a Hydra multirun directory (or any folder of runs)")
    parser.add_argument("--keys", default="", help="comma-separated numeric columns that identify a row, e.g. k,noise")
    parser.add_argument("--level", type=float, default=0.95, help="confidence level of the t-interval")
    args = parser.parse_args(argv)
    keys = [k for k in args.keys.split(",") if k]
    tables = aggregate(args.multirun_dir, keys, args.level)
    print((args.multirun_dir / "aggregate.md").read_text())
    print(f"{sum(len(t) for t in tables.values())} aggregated rows written to {args.multirun_dir}/aggregate.*")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

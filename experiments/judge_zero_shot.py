"""An instruct model as a zero-shot judge, on the ladder levels from easy to hard:
`python -m experiments.judge_zero_shot [--backbone smollm2-135m] [--levels single level1 level2]
[--n 200] [--out docs/data/judge_zero_shot]`.

For each level (seen wordings, evaluation partition; `single` is level 1 cut to one operation on
one-digit numbers, "What is 4 + 3?", the easiest problem the task writes):

1. **Can the judge solve it?** Its greedy answer (chat template, up to 96 new tokens) to `--n`
   prompts, right when the last integer it writes is the true value (lenient: prose such as "The
   answer is 7." counts). A judge can plausibly check answers on a level it mostly solves.
2. **The dataset's solutions:** `--n` outcome examples (half right, half with one error), the
   one-forward verdict (`GenerativeRewardModel`, log-odds of Yes vs No): AUROC, accuracy, ECE,
   Brier, NLL and mean P(Yes), each with a 95% bootstrap interval over examples.
3. **Its own answers:** the same verdict on the answers of step 1, labelled by whether they are
   right (the setting of a judge grading its own samples), when both labels occur.

Writes `metrics.json`, `summary.md` and `reliability.png` (P(Yes) against correctness) under `--out`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path

import numpy as np

from nexus import metrics
from nexus.backbones import load_backbone
from nexus.models.generative import GenerativeRewardModel
from nexus.models.judge import verdict_metrics
from nexus.reporting import markdown_table, plot_reliability
from nexus.sampling.policy import HFPolicy
from nexus.tasks import arithmetic
from nexus.tasks.arithmetic.templates import SEEN_TEMPLATES

INTEGER = re.compile(r"-?\d+")
SHOWN = ("auroc", "accuracy", "ece", "mean_p_yes")


def last_integer(text: str) -> int | None:
    found = INTEGER.findall(text.replace(",", ""))
    return int(found[-1]) if found else None


def with_intervals(log_odds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """`verdict_metrics` and a bootstrap interval (`_low`, `_high`) for each of `SHOWN`."""
    report = verdict_metrics(log_odds, labels)
    for name in SHOWN:
        low, high = metrics.bootstrap_interval(lambda lo, y: verdict_metrics(lo, y)[name], log_odds, labels)
        report[f"{name}_low"], report[f"{name}_high"] = low, high
    return report


def level_report(judge: GenerativeRewardModel, policy: HFPolicy, level: str, n: int) -> tuple[dict, dict]:
    base = arithmetic.SPLITS["level1" if level == "single" else level]
    steps = {"min_steps": 1, "max_steps": 1} if level == "single" else {}
    task = dataclasses.replace(base, templates=SEEN_TEMPLATES, partition="eval", **steps)
    data = arithmetic.generate(n, 11, task)
    prompts = [e.prompt for e in data["pairwise"][:n]]
    answers = [samples[0] for samples in policy.generate(prompts, n=1, temperature=0.0)]
    truth = [arithmetic.solve(*arithmetic.parse_prompt(p))[1] for p in prompts]
    own_right = np.array([float(last_integer(a) == t) for a, t in zip(answers, truth)])
    outcome = data["outcome"][:n]
    log_odds = judge.score([e.prompt for e in outcome], [e.response for e in outcome]).rewards.numpy()
    labels = np.array([float(e.label >= 0.5) for e in outcome])
    row = {"level": level, "solve_rate": float(own_right.mean()), "n": len(outcome),
           **{f"dataset_{k}": v for k, v in with_intervals(log_odds, labels).items()}}
    curves = {f"{level}, dataset solutions": (1 / (1 + np.exp(-log_odds)), labels)}
    if 0 < own_right.sum() < len(own_right):
        own = judge.score(prompts, answers).rewards.numpy()
        row.update({f"own_{k}": v for k, v in with_intervals(own, own_right).items()})
        curves[f"{level}, its own answers"] = (1 / (1 + np.exp(-own)), own_right)
    row["example_answer"] = answers[0]
    return row, curves


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="smollm2-135m")
    parser.add_argument("--levels", nargs="+", default=["single", "level1", "level2"])
    parser.add_argument("--n", type=int, default=200, help="prompts and outcome examples per level")
    parser.add_argument("--out", default="outputs/judge_zero_shot")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    judge = GenerativeRewardModel(load_backbone(args.backbone, lm_head=True), batch_size=16).eval()
    policy = HFPolicy(args.backbone, max_new_tokens=96, batch_size=32)
    rows, curves = [], {}
    for level in args.levels:
        row, level_curves = level_report(judge, policy, level, args.n)
        rows.append(row)
        curves.update(level_curves)
        print({k: v for k, v in row.items() if not k.endswith(("_low", "_high"))}, flush=True)
    (out / "metrics.json").write_text(json.dumps(rows, indent=1))
    plot_reliability(out / "reliability.png", curves, title=f"P(Yes) of {args.backbone}, zero-shot",
                     xlabel="P(Yes)")
    table = []
    for row in rows:
        for source in ("dataset", "own"):
            if f"{source}_auroc" in row:
                table.append({"level": row["level"], "solved by the judge": f"{row['solve_rate']:.3f}",
                              "judged": "dataset solutions" if source == "dataset" else "its own answers",
                              **{name: f"{row[f'{source}_{name}']:.3f} [{row[f'{source}_{name}_low']:.3f}, "
                                       f"{row[f'{source}_{name}_high']:.3f}]" for name in SHOWN}})
    text = markdown_table(table)
    (out / "summary.md").write_text(f"# {args.backbone} as a zero-shot judge\n\n{text}\n")
    print(text, flush=True)
    return rows


if __name__ == "__main__":
    main()

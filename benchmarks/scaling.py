"""How scoring time grows: with batch size, sequence length, N in best-of-N and K in the ensemble.

python -m benchmarks.scaling [--backbone smollm2-135m] [--out benchmarks/figures] [--repeats 3]

One axis at a time, the others held fixed; each axis gets a log-log PNG (`--out/scaling_<axis>.png`)
with the time of every case and the exponent p of time ~ x^p fitted by least squares on the logs
(`fit_exponent`), printed and in the legend. Cases: scalar-RM `score` of B equal inputs in one
batch (batch), of 8 inputs of L tokens (length), best-of-N with the prompt read N times
(`share_prompts=False`) and once (`score_candidates`: packed rows), and
ensembles of K shared members and K independent backbones. Every input is read whole on the batch
and length axes (`share_prompts=False`), which repeat one prompt.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter  # noqa: E402

from benchmarks.best_of_n import best_of_n_task  # noqa: E402
from benchmarks.common import Row, benchmark_parser, best_seconds, report, threads_note  # noqa: E402
from nexus.backbones import load_backbone  # noqa: E402
from nexus.tasks.arithmetic import ArithmeticConfig, generate  # noqa: E402
from nexus.models.ensemble import EnsembleRewardModel  # noqa: E402
from nexus.models.scalar import ScalarRewardModel  # noqa: E402


def fit_exponent(x, y) -> float:
    """p of y ~ c x^p: the slope of log y on log x (least squares)."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def text_of_tokens(backbone, n: int, seed: int = 0) -> tuple[str, str]:
    """A (prompt, response) whose token sequence is about `n` tokens long (arithmetic steps, cut)."""
    problem = generate(1, seed=seed, cfg=ArithmeticConfig(digits=3, min_steps=60, max_steps=60))["pairwise"][0]
    prompt = "Solve:"
    overhead = len(backbone.token_ids([prompt], [""])[0])
    ids = backbone.tokenizer(problem.chosen, add_special_tokens=False)["input_ids"][: max(1, n - overhead)]
    return prompt, backbone.tokenizer.decode(ids)


def plot(axis: str, xlabel: str, series: dict[str, tuple[list, list]], out: Path) -> dict[str, float]:
    """One log-log panel with a fitted exponent per series; returns the exponents."""
    exponents = {}
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name, (x, y) in series.items():
        exponents[name] = fit_exponent(x, y)
        ax.loglog(x, y, "o-", label=f"{name} (exponent {exponents[name]:.2f})")
    ticks = sorted({v for x, _ in series.values() for v in x})
    ax.xaxis.set_major_locator(FixedLocator(ticks))  # label the measured points, plainly
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel("seconds per call")
    ax.set_title(f"scoring time vs {axis}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"scaling_{axis}.png", dpi=120)
    plt.close(fig)
    return exponents


def sweep(args, backbone) -> dict[str, tuple[str, dict]]:
    """axis -> (x label, {series: (x values, seconds)})."""
    time = lambda fn: best_seconds(fn, args.repeats)  # noqa: E731
    rm = ScalarRewardModel(backbone, dropout=0.0).eval()
    prompt, response = text_of_tokens(backbone, args.length)
    # every input read whole (share_prompts=False: these axes repeat one prompt, which `score` would pack)
    batch = [time(lambda b=b: rm.score([prompt] * b, [response] * b, batch_size=b, share_prompts=False))
             for b in args.batch_sizes]
    texts = [text_of_tokens(backbone, n) for n in args.lengths]
    tokens = [len(backbone.token_ids([p], [r])[0]) for p, r in texts]
    length = [time(lambda p=p, r=r: rm.score([p] * 8, [r] * 8, share_prompts=False)) for p, r in texts]
    tasks = [best_of_n_task(backbone, n, 4.0, random.Random(0)) for n in args.ns]  # one problem: only N varies
    plain = [time(lambda t=t: rm.score([t[0]] * len(t[1]), t[1], share_prompts=False)) for t in tasks]
    packed = [time(lambda t=t: rm.score_candidates(*t)) for t in tasks]
    shared, independent = [], []
    inputs = ([prompt] * 8, [response] * 8)
    for k in args.ks:
        shared.append(time(lambda k=k: EnsembleRewardModel(backbone, n_members=k).eval().score(*inputs)))
        members = EnsembleRewardModel(backbone, n_members=k, form="independent").eval()
        independent.append(time(lambda: members.score(*inputs)))
    return {
        "batch": ("inputs per batch", {"scalar RM": (args.batch_sizes, batch)}),
        "length": ("tokens per input (batch of 8)", {"scalar RM": (tokens, length)}),
        "n": ("N candidates (best-of-N)", {"prompt read N times": (args.ns, plain),
                                           "prompt read once (packed rows)": (args.ns, packed)}),
        "k": ("K ensemble members (8 inputs)", {"shared backbone": (args.ks, shared),
                                                "independent backbones": (args.ks, independent)}),
    }


def run(args) -> list[Row]:
    backbone = load_backbone(args.backbone)
    rows = []
    for axis, (xlabel, series) in sweep(args, backbone).items():
        exponents = plot(axis, xlabel, series, Path(args.out))
        for name, (x, y) in series.items():
            points = ", ".join(f"{a:g}: {b * 1e3:.1f} ms" for a, b in zip(x, y))
            rows.append(Row("scaling", f"{axis}: {name}", y[-1], f"exponent {exponents[name]:.2f}",
                            note=f"{points}; {Path(args.out) / f'scaling_{axis}.png'}"))
    return report(rows, f"scaling, backbone {args.backbone}, {threads_note()} (seconds: the largest case)")


def parser() -> argparse.ArgumentParser:
    p = benchmark_parser(__doc__, repeats=3)
    p.add_argument("--backbone", default="smollm2-135m")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "figures"))
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    p.add_argument("--length", type=int, default=64, help="tokens per input on the batch axis")
    p.add_argument("--lengths", type=int, nargs="+", default=[32, 64, 128, 256])
    p.add_argument("--ns", type=int, nargs="+", default=[2, 4, 8, 16, 32, 64])
    p.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    return p


def main(argv=None) -> list[Row]:
    return run(parser().parse_args(argv))


if __name__ == "__main__":
    main()

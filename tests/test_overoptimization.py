"""bon_overoptimization: the Gao fit, Bradley-Terry labels, the best-of-n curves, and a tiny end-to-end run."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

import nexus
from experiments.bon_overoptimization import run, truth_reward
import experiments.common
from experiments.common import experiment_task, log_study
from hydra.utils import instantiate
from nexus.tasks import arithmetic
from nexus.sampling.overoptimization import (bon_curves, bradley_terry_labels, fit_gao_bon, gao_bon,
                                             power_of_two_ns, rises_then_falls, sqrt_kl)
from tests.conftest import compose_config


def test_gao_fit_recovers_a_noiseless_curve():
    ns = power_of_two_ns(256)
    d = sqrt_kl(ns)
    assert ns == [1, 2, 4, 8, 16, 32, 64, 128, 256] and d[0] == 0.0
    assert d[-1] == pytest.approx(math.sqrt(math.log(256) - 255 / 256))
    fit = fit_gao_bon(d, 1.3 * d - 0.45 * d**2)
    assert fit.alpha == pytest.approx(1.3, rel=1e-6) and fit.beta == pytest.approx(0.45, rel=1e-6)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12) and fit.peak_d == pytest.approx(1.3 / 0.9)
    assert rises_then_falls(gao_bon(d, 1.3, 0.45)) and not rises_then_falls(gao_bon(d, 1.3, 0.1))
    noisy = gao_bon(d, 1.3, 0.45) + np.random.default_rng(0).normal(0, 0.05, len(d))
    rough = fit_gao_bon(d, noisy)
    residual = ((noisy - gao_bon(d, rough.alpha, rough.beta)) ** 2).sum()
    assert rough.r2 == pytest.approx(1 - residual / ((noisy - noisy.mean()) ** 2).sum()) and rough.r2 < 1
    assert math.isnan(fit_gao_bon(d, np.zeros_like(d)).r2) and fit_gao_bon(d, d).peak_d == math.inf
    assert power_of_two_ns(100)[-2:] == [64, 100]


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_bradley_terry_labels_match_sigmoid_frequencies(temperature):
    rng = np.random.default_rng(1)
    g_a, g_b = rng.normal(0, 2, 200_000), rng.normal(0, 2, 200_000)
    labels = bradley_terry_labels(g_a, g_b, seed=5, temperature=temperature)
    gap = g_a - g_b
    for idx in np.array_split(np.argsort(gap), 20):  # 10,000 pairs a bin: standard error <= 0.005
        expected = (1 / (1 + np.exp(-gap[idx] / temperature))).mean()
        assert labels[idx].mean() == pytest.approx(expected, abs=0.02)
    assert np.array_equal(labels, bradley_terry_labels(g_a, g_b, seed=5, temperature=temperature))
    assert not np.array_equal(labels, bradley_terry_labels(g_a, g_b, seed=6, temperature=temperature))
    with pytest.raises(ValueError, match="gold_a"):
        bradley_terry_labels(g_a, g_b[:3], seed=0)


def test_bon_curves_endpoints_and_truth_reward():
    rng = np.random.default_rng(2)
    scores, gold = rng.normal(size=(6, 16)), rng.normal(size=(6, 16))
    proxy, true = bon_curves(scores, gold, [1, 16])
    assert true[0] == pytest.approx(gold.mean()) and proxy[0] == pytest.approx(scores.mean())
    assert true[1] == pytest.approx(gold[np.arange(6), scores.argmax(axis=1)].mean())
    assert proxy[1] == pytest.approx(scores.max(axis=1).mean())
    assert truth_reward("1 + 2 - 3", "1 + 2 = 3\n3 - 3 = 0") == 1.0
    assert truth_reward("1 + 2 - 3", "1 + 2 = 3\n3 - 3 = 2") == pytest.approx(0.5 - math.log(3))
    assert truth_reward("1 + 2 - 3", "1 + 2 = 5\n5 - 3 = 2") == pytest.approx(-math.log(3))
    assert truth_reward("1 + 2 - 3", "no answer") == pytest.approx(-math.log(2))  # off by |0| + 1


def test_log_study_is_off_without_wandb(tmp_path):
    cfg = compose_config(tmp_path, "run", ["experiment=bon_overoptimization"])
    assert log_study(cfg, tmp_path, {"metrics": [{"a": 1}]}, {"x": 1.0}) is None
    assert not (tmp_path / "wandb").exists()


N, LABELS = 8, [8, 16]
TINY = ["experiment=bon_overoptimization", "+debug=bon_overoptimization",  # N = 8, labels 8 and 16
        "~experiment.proxies.large", "experiment.save_gold=true", "logger=wandb"]


@pytest.mark.slow
def test_tiny_study_runs_end_to_end_and_logs_to_wandb(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    # The study's own wandb run is under test; the Trainer's wandb callback (tests/test_slow.py
    # covers it) costs a minute a proxy on a busy 2-core machine, so the proxies train without it.
    monkeypatch.setattr(experiments.common, "configure_logger", lambda logger, run_dir=None: "none")
    cfg = compose_config(tmp_path, "run", [*TINY, f"experiment.cache_dir={tmp_path / 'generations'}"])
    out = run(cfg, tmp_path)
    for name in ("metrics.json", "metrics.csv", "curves.csv", "results.md", "overoptimization.png", "coste.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    rows = out["rows"]
    assert [(r["proxy"], r["rule"], r["n_labels"]) for r in rows] == [
        ("small", "argmax", 8), ("small", "argmax", 16), ("medium", "argmax", 8), ("medium", "argmax", 16),
        ("medium", "mean", 16), ("medium", "worst_case", 16), ("medium", "uwo", 16)]
    assert out["ns"] == [1, 2, 4, 8] and out["label_pairs"] == 16

    # The pools again, from the policy itself, scored by the saved gold RM: best-of-1 under any
    # selector is a uniform draw, so its gold is the pools' mean gold; best-of-N is at most the best.
    problems = arithmetic.generate(4, cfg.experiment.test_seed, experiment_task(cfg, "eval"))["pairwise"]
    pools = instantiate(cfg.experiment.policy).generate([p.prompt for p in problems], N, seed=cfg.seed + 7)
    gold_rm = nexus.load(tmp_path / "gold")
    gold = gold_rm.score([p.prompt for p, pool in zip(problems, pools) for _ in pool],
                         [s for pool in pools for s in pool]).rewards.numpy().reshape(4, N)
    assert out["pool_gold_mean"] == pytest.approx(gold.mean(), rel=1e-5)
    for r in rows:
        assert r["gold_bo1"] == pytest.approx(gold.mean(), rel=1e-5), r
        assert r[f"gold_bo{N}"] <= gold.max(axis=1).mean() + 1e-5 and r["gold_peak"] >= r["gold_bo1"]
    with open(tmp_path / "curves.csv") as f:
        points = list(csv.DictReader(f))
    assert len(points) == len(rows) * 4 and all(float(p["gold_gain"]) == 0.0 for p in points if p["n"] == "1")
    assert json.loads((tmp_path / "metrics.json").read_text())["rows"][0]["alpha"] == pytest.approx(rows[0]["alpha"])

    study = [p.parents[4] for p in tmp_path.glob("wandb/offline-run-*/files/media/table/tables/*")]
    assert len(set(study)) == 1, "one study run with tables"
    table = json.loads(next((study[0] / "files/media/table/tables").glob("metrics_*.table.json")).read_text())
    assert len(table["data"]) == len(rows) and "alpha" in table["columns"]
    images = {p.name.split("_")[0] for p in (study[0] / "files/media/images/plots").glob("*.png")}
    assert images == {"coste", "overoptimization"}
    log = next(study[0].glob("*.wandb")).read_bytes()
    assert b"fits/small/n8/argmax/alpha" in log and b"bon_overoptimization" in log  # summary and config

    # Over seeds (two copies of this run): gains in pool gold stds, and seed-paired differences.
    import shutil

    from experiments.bon_seeds import report

    for seed in ("0", "1"):
        shutil.copytree(tmp_path, tmp_path / "sweep" / seed, ignore=shutil.ignore_patterns("sweep", "wandb", "gold"))
    summary = report(tmp_path / "sweep")
    std = out["pool_gold_std"]
    first = summary["rows"][0]
    peak = (rows[0]["gold_peak"] - rows[0]["gold_bo1"]) / std
    assert first["seeds"] == 2 and first["gold gain at peak"] == f"{peak:+.3f} [{peak:+.3f}, {peak:+.3f}]"
    ensemble = next(c for c in summary["comparisons"] if c["comparison"].startswith("ensemble"))
    by_rule = {(r["proxy"], r["rule"], r["n_labels"]): r for r in rows}
    expected = (by_rule[("medium", "mean", 16)][f"gold_bo{N}"] - by_rule[("medium", "argmax", 16)][f"gold_bo{N}"]) / std
    assert ensemble["comparison"] == "ensemble (K=4) mean - scalar (medium, 16 labels)"
    assert ensemble["end gain difference"].startswith(f"{expected:+.3f}")
    assert (tmp_path / "sweep" / "bon_seeds.png").stat().st_size > 0

"""The ensemble-uncertainty study: its per-cell metrics by hand, and a tiny end-to-end run."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

import nexus
from experiments.ensemble_uncertainty import MemberScores, cell_metrics, run
from nexus import metrics
from tests.conftest import compose_config


def test_cell_metrics_read_uncertainty_and_mistakes():
    rng = np.random.default_rng(0)
    n, k = 400, 4
    # 100 pairs the members disagree on (spread 2.0) and get wrong on average; 300 they agree on and get right.
    spread = np.where(np.arange(n) < 100, 2.0, 0.05)[:, None]
    centre = np.where(np.arange(n) < 100, -0.5, 2.0)[:, None]
    mean_c = centre + spread * rng.standard_normal((n, k))
    zeros = np.zeros((n, k))
    s = MemberScores(mean_c, zeros, zeros.copy(), zeros.copy())
    row = cell_metrics(s, temperature=1.0, n_resamples=200)
    errors = (mean_c.mean(1) <= 0).astype(float)
    assert row["accuracy"] == pytest.approx(1 - errors.mean())
    np.testing.assert_allclose(s.pair_std, mean_c.std(axis=1))  # scalar heads: the member spread only
    assert row["epistemic_var"] == pytest.approx(np.concatenate([mean_c.var(1), np.zeros(n)]).mean())
    assert row["auroc_reward_std"] == pytest.approx(metrics.auroc(mean_c.std(axis=1), errors))
    p = 1 / (1 + np.exp(-mean_c))  # zero variances: each member's probability is sigmoid(r_c - r_r)
    h = lambda q: -(q * np.log(q) + (1 - q) * np.log(1 - q))  # noqa: E731
    np.testing.assert_allclose(s.mutual_information, h(p.mean(1)) - h(p).mean(1), atol=1e-9)
    assert row["auroc_mi"] == pytest.approx(metrics.auroc(s.mutual_information, errors))
    assert row["auroc_mi_lo"] > 0.8 and row["auroc_mi_lo"] <= row["auroc_mi"] <= row["auroc_mi_hi"]
    assert row["auroc_entropy"] == pytest.approx(metrics.auroc(s.entropy, errors))
    assert row["aurc_mi"] < errors.mean()  # keeping the certain pairs first lowers the risk
    assert row["aleatoric_var"] == 0.0
    one = cell_metrics(s.first(1), temperature=1.0, n_resamples=50)
    assert one["auroc_mi"] == 0.5 and one["epistemic_var"] == 0.0 and one["mi"] == 0.0  # one member: no spread


@pytest.mark.slow
def test_tiny_study_writes_every_cell_and_loadable_models(tmp_path):
    overrides = ["experiment=ensemble_uncertainty", "+debug=ensemble_uncertainty"]  # K in {1, 2}
    rows = run(compose_config(tmp_path, "run", overrides), tmp_path)
    # 2 noise rates x (shared K=1,2 + shared_gaussian K=2 + shared_bank K=2 + finetune K=1,2 + pretrain K=1,2)
    # x 2 splits
    assert len(rows) == 2 * 8 * 2
    with open(tmp_path / "metrics.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    for name in ("results.md", "summary.md", "reliability_noise0.png", "reliability_noise25.png",
                 "risk_coverage_noise25.png", "epistemic.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    for r in rows:
        assert 0 <= r["ece"] <= 1 and r["temperature"] > 0 and math.isfinite(r["nll"])
        assert (r["epistemic_var"] == 0) == (r["k"] == 1)
        assert (r["aleatoric_var"] > 0) == (r["variant"] == "shared_gaussian")
    again = run(compose_config(tmp_path / "again", "run", [*overrides, f"experiment.scores_from={tmp_path}"]),
                tmp_path / "again")
    assert again == rows  # the metrics come from the saved scores alone
    rm = nexus.load(tmp_path / "models" / "noise0.25" / "pretrain_seed_k2")
    assert rm.form == "independent" and len(rm.backbones) == 2
    assert rm.reference_size == 2 * 48  # standardised on the debug config's 48 validation pairs
    out = rm.score(["1 + 2"], ["1 + 2 = 3"])
    assert out.uncertainty.shape == (1,) and set(out.extras) >= {"epistemic_var", "aleatoric_var"}

    # Over seeds (two copies of this run): cells are the run's own numbers, paired differences by hand.
    from omegaconf import OmegaConf

    from experiments.ensemble_seeds import report

    for seed in ("0", "1"):
        (tmp_path / "sweep" / seed / ".hydra").mkdir(parents=True)
        (tmp_path / "sweep" / seed / "metrics.json").write_text((tmp_path / "metrics.json").read_text())
        OmegaConf.save(compose_config(tmp_path, "run", overrides), tmp_path / "sweep" / seed / ".hydra" / "config.yaml")
    summary = report(tmp_path / "sweep")
    seen = summary["in_distribution"]
    by = {(r["noise"], r["variant"], r["k"], r["split"]): r for r in rows}
    cell = next(r for r in summary["rows"] if (r["noise"], r["variant"], r["K"]) == (0.25, "shared", 2))
    accuracy = by[(0.25, "shared", 2, seen)]["accuracy"]
    assert cell["seeds"] == 2 and cell["accuracy"] == f"{accuracy:.3f} [{accuracy:.3f}, {accuracy:.3f}]"
    diff = next(d for d in summary["differences"] if (d["noise"], d["comparison"]) == (0.25, "shared: K=2 - K=1"))
    expected = by[(0.25, "shared", 2, seen)]["ece"] - by[(0.25, "shared", 1, seen)]["ece"]
    assert diff["ece"].startswith(f"{expected:.3f}")


@pytest.mark.slow
def test_tiny_process_vs_outcome_reports_every_method(tmp_path):
    from experiments.process_vs_outcome import run as run_pvo

    cfg = compose_config(tmp_path, "run", [
        "experiment=process_vs_outcome", "+debug=process_vs_outcome"])  # N = 8, ns 1, 2, 8
    out = run_pvo(cfg, tmp_path)
    by = {r["method"]: r for r in out["rows"]}
    assert set(by) == {"prm_min", "prm_prod", "prm_last", "prm_mean", "orm", "majority_vote",
                       "prm_weighted_vote", "random", "oracle"}
    for r in by.values():  # n = 1 is a random draw whatever the selector
        assert r["bo1"] == pytest.approx(by["random"]["bo1"])
    assert by["oracle"]["bo8"] >= max(r["bo8"] for r in by.values())
    assert 0 <= out["processbench"]["f1"] <= 1 and (tmp_path / "best_of_n.png").stat().st_size > 0
    assert nexus.load(tmp_path / "models" / "prm").model_type == "process"

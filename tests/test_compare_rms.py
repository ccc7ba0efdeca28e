"""compare_rms: a tiny end-to-end run over every RM family, and the multirun aggregation by hand."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from experiments.aggregate import aggregate, t_interval
from experiments.compare_rms import chosen_families, run
from nexus.tasks import arithmetic
from tests.conftest import compose_config

MODEL_DIR = Path(__file__).resolve().parents[1] / "experiments" / "conf" / "model"
NS = [1, 2, 8]
TINY = ["experiment=compare_rms", "+debug=compare_rms"]  # experiment.ns=[1,2,8], 3 ensemble members


@pytest.mark.slow
def test_tiny_compare_rms_covers_every_family_and_the_identities(tmp_path):
    from hydra.utils import get_class, instantiate
    from omegaconf import OmegaConf

    from experiments.common import arithmetic_tasks

    cfg = compose_config(tmp_path, "run", [*TINY, f"experiment.cache_dir={tmp_path / 'generations'}"])
    out = run(cfg, tmp_path)
    # the folder, listed here independently; a family that reads features runs with and without them
    families = sorted(p.stem for p in MODEL_DIR.glob("*.yaml"))
    reads = {f: getattr(get_class(OmegaConf.load(MODEL_DIR / f"{f}.yaml")._target_), "reads_features", False)
             for f in families}
    variants = [v for f in families for v in ([f"{f}+ll", f"{f}-ll"] if reads[f] else [f])]
    assert [r["family"] for r in out["rows"]] == variants
    assert reads["scalar"] and not reads["generative"] and not reads["rules"]
    table = (tmp_path / "results.md").read_text()
    assert all(f"| {v} |" in table for v in variants)
    by = {r["family"]: r for r in out["rows"]}
    assert by["rules"]["trained_on"] == "nothing" and by["scalar+ll"]["trained_on"] == "pairwise (16)"
    assert by["process-ll"]["trained_on"] == "process (32)" and by["outcome+ll"]["trained_on"] == "outcome (32)"
    assert (by["scalar+ll"]["loglik"], by["scalar-ll"]["loglik"], by["rules"]["loglik"]) == ("on", "off", "n/a")
    # every variant has a row per evaluation set of the ladder, seen and unseen wordings
    sets = {(r["family"], r["loglik"], r["eval_set"]) for r in out["pairwise"]}
    assert len(sets) == len(out["pairwise"]) == len(variants) * 6

    # The pools again, from the policy itself: best-of-1 is the policy's pass rate for every
    # method (a random draw whatever the selector), and the oracle is P(some correct among n).
    task = arithmetic_tasks(cfg.data, cfg.experiment.split, "eval", cfg.data.templates)[0]
    problems = arithmetic.generate(5, cfg.experiment.test_seed, task)["pairwise"]
    pools = instantiate(cfg.experiment.policy).generate([p.prompt for p in problems], 8, seed=cfg.seed + 7)
    gold = np.array([[arithmetic.gold_reward(p.prompt, s) for s in pool] for p, pool in zip(problems, pools)])
    assert out["policy_pass_rate"] == pytest.approx(gold.mean())
    selection = {r["method"]: r for r in out["selection"]}
    for method, r in selection.items():
        assert r["bo1"] == pytest.approx(gold.mean()), method
    for variant, r in by.items():
        assert r["bo1"] == pytest.approx(gold.mean()) and r["bo8"] == selection[f"{variant}/argmax"]["bo8"]
        assert 0 <= r["ece_level1/seen"] <= 1 and 0 <= r["brier_level2/unseen"] <= 1 and r["responses_per_s"] > 0
    assert selection["oracle"]["bo8"] == pytest.approx(gold.max(axis=1).mean())
    for n in NS:
        assert all(selection["oracle"][f"bo{n}"] >= r[f"bo{n}"] - 1e-12 for r in selection.values())
    assert {"ensemble+ll/penalized", "ensemble+ll/worst_case", "ensemble-ll/uwo"} <= set(selection)
    assert "scalar+ll/uwo" not in selection and "scalar-ll/weighted_vote" in selection

    for name in ("metrics.json", "metrics.csv", "selection.csv", "pairwise.csv", "reliability.png", "best_of_n.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    with open(tmp_path / "selection.csv") as f:
        assert len(list(csv.DictReader(f))) == len(selection)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    lo, hi = saved["bootstrap_95"]["oracle"]["8"]
    assert lo <= selection["oracle"]["bo8"] <= hi


def test_unknown_family_is_named(tmp_path):
    cfg = compose_config(tmp_path, "run", [*TINY, "experiment.families=[scalar,nope]"])
    with pytest.raises(ValueError, match="experiment.families: 'nope'"):
        chosen_families(cfg.experiment)
    assert chosen_families(compose_config(tmp_path, "run", TINY).experiment) == sorted(
        p.stem for p in MODEL_DIR.glob("*.yaml"))


def _fake_run(directory: Path, seed: int, rows: list[dict], selection: list[dict]) -> None:
    (directory / ".hydra").mkdir(parents=True)
    (directory / ".hydra" / "overrides.yaml").write_text(f"- experiment=compare_rms\n- seed={seed}\n")
    (directory / "metrics.json").write_text(json.dumps({"rows": rows, "selection": selection, "families": ["a"]}))


def test_aggregate_two_seeds_by_hand(tmp_path):
    _fake_run(tmp_path / "0_seed=0", 0, [{"family": "scalar", "accuracy": 0.8, "bo4": 0.5},
                                         {"family": "ensemble", "accuracy": 0.7, "bo4": 0.6}],
              [{"method": "oracle", "bo4": 0.9}])
    _fake_run(tmp_path / "1_seed=1", 1, [{"family": "scalar", "accuracy": 0.9, "bo4": 0.5},
                                         {"family": "ensemble", "accuracy": 0.75, "bo4": 0.7}],
              [{"method": "oracle", "bo4": 1.0}])
    tables = aggregate(tmp_path)
    rows = {r["family"]: r for r in tables["rows"]}
    t = 12.706204736174698  # t_{0.975, 1 degree of freedom}
    # scalar accuracy: mean 0.85, sample std 0.1 / sqrt(2), standard error 0.05
    assert rows["scalar"]["n_runs"] == 2 and rows["scalar"]["accuracy"] == pytest.approx(0.85)
    assert rows["scalar"]["accuracy_lo"] == pytest.approx(0.85 - t * 0.05)
    assert rows["scalar"]["accuracy_hi"] == pytest.approx(0.85 + t * 0.05)
    assert rows["scalar"]["bo4_lo"] == pytest.approx(0.5) == rows["scalar"]["bo4_hi"]  # no spread
    assert rows["ensemble"]["bo4"] == pytest.approx(0.65)
    assert rows["ensemble"]["bo4_hi"] == pytest.approx(0.65 + t * 0.05)
    assert tables["selection"][0]["bo4"] == pytest.approx(0.95) and "setting" not in rows["scalar"]
    assert "0.85 ± 0.64" in (tmp_path / "aggregate.md").read_text()
    with open(tmp_path / "aggregate_selection.csv") as f:
        assert float(next(csv.DictReader(f))["bo4_lo"]) == pytest.approx(0.95 - t * 0.05)
    assert t_interval([3.0])[0] == 3.0 and np.isnan(t_interval([3.0])[1])


def test_aggregate_refuses_rows_it_cannot_tell_apart(tmp_path):
    rows = [{"k": 1, "accuracy": 0.8}, {"k": 2, "accuracy": 0.9}]
    _fake_run(tmp_path / "a", 0, rows, [{"method": "x", "v": 1.0}])
    _fake_run(tmp_path / "b", 1, rows, [{"method": "x", "v": 1.0}])
    with pytest.raises(ValueError, match="--keys"):
        aggregate(tmp_path)
    assert [r["k"] for r in aggregate(tmp_path, keys=["k"])["rows"]] == [1, 2]

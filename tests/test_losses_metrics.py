"""Tests for nexus.losses and nexus.metrics: hand-worked values and brute-force references."""

import math

import numpy as np
import pytest
import torch

from nexus import losses, metrics


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ---------------------------------------------------------------- losses


def test_bt_loss_hand_value():
    loss = losses.bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0]))
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(1))) / 2
    assert loss.shape == ()
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_bt_margin_shifts_logit():
    c, r, m = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.5])
    expected = (math.log(2) + math.log(1 + math.exp(-2.5))) / 2
    assert losses.bradley_terry_loss(c, r, m).item() == pytest.approx(expected, rel=1e-6)
    assert losses.LOSSES["bt_margin"](c, r, m).item() == pytest.approx(expected, rel=1e-6)
    assert losses.LOSSES["bt"](c, r).item() == pytest.approx(
        (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-3))) / 2, rel=1e-6
    )


def test_bt_margin_requires_margin():
    with pytest.raises(ValueError, match="margin"):
        losses.LOSSES["bt_margin"](torch.zeros(2), torch.zeros(2))


def test_bt_loss_is_stable_for_large_gaps():
    loss = losses.bradley_terry_loss(torch.tensor([0.0]), torch.tensor([200.0]))
    assert loss.item() == pytest.approx(200.0, rel=1e-6)


def test_bt_gradient_wrt_chosen():
    torch.manual_seed(0)
    chosen = torch.randn(5, dtype=torch.float64, requires_grad=True)
    rejected = torch.randn(5, dtype=torch.float64, requires_grad=True)
    losses.bradley_terry_loss(chosen, rejected).backward()
    expected = -torch.sigmoid(rejected - chosen).detach() / 5
    torch.testing.assert_close(chosen.grad, expected)
    torch.testing.assert_close(rejected.grad, -expected)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        losses.bradley_terry_loss(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match=r"\(2, 1\).*\(2,\)"):
        losses.reward_centering_loss(torch.zeros(2, 1), torch.zeros(2))
    with pytest.raises(ValueError, match="margin"):
        losses.bradley_terry_loss(torch.zeros(2), torch.zeros(2), torch.zeros(3))


def test_reward_centering_hand_value():
    loss = losses.reward_centering_loss(torch.tensor([1.0, 2.0]), torch.tensor([-1.0, 1.0]))
    assert loss.item() == pytest.approx(4.5)


def test_bce_hand_values():
    logits, labels = torch.tensor([0.0, 2.0]), torch.tensor([1, 0])
    expected = (math.log(2) + math.log(1 + math.exp(2))) / 2
    loss = losses.binary_cross_entropy_loss(logits, labels)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    weighted = losses.binary_cross_entropy_loss(logits, labels, torch.tensor([1.0, 0.0]))
    assert weighted.item() == pytest.approx(math.log(2) / 2, rel=1e-6)
    soft = losses.binary_cross_entropy_loss(torch.tensor([1.0]), torch.tensor([0.3]))
    p = _sigmoid(1.0)
    assert soft.item() == pytest.approx(-(0.3 * math.log(p) + 0.7 * math.log(1 - p)), rel=1e-6)


def test_bce_rejects_label_outside_unit_interval():
    with pytest.raises(ValueError, match=r"labels\[1\]"):
        losses.binary_cross_entropy_loss(torch.zeros(3), torch.tensor([0.0, 1.5, 1.0]))


# ---------------------------------------------------------------- metrics: pairwise and stats


def test_pairwise_accuracy_ties_count_half():
    assert metrics.pairwise_accuracy([1, 2, 3], [0, 2, 4]) == pytest.approx(0.5)
    assert metrics.pairwise_accuracy([1, 2, 5, 0], [0, 2, 4, 0]) == pytest.approx(0.75)


def test_inputs_torch_numpy_list_agree():
    c, r = [0.3, -1.0, 2.0], [0.1, 0.0, 2.5]
    expected = np.mean([0.2, -1.0, -0.5])
    for conv in (list, np.array, lambda x: torch.tensor(x, requires_grad=True)):
        assert metrics.mean_margin(conv(c), conv(r)) == pytest.approx(expected, rel=1e-6)
    bf16 = torch.tensor(c, dtype=torch.bfloat16)
    assert metrics.mean_margin(bf16, r) == pytest.approx(expected, abs=0.02)


def test_reward_stats_hand_values():
    s = metrics.reward_stats([4.0, 1.0, 3.0, 2.0])
    assert s == pytest.approx(
        {"mean": 2.5, "std": math.sqrt(1.25), "min": 1.0, "max": 4.0,
         "p05": 1.15, "p50": 2.5, "p95": 3.85}
    )
    assert all(type(v) is float for v in s.values())


# ---------------------------------------------------------------- metrics: calibration


def test_ece_hand_example_both_strategies():
    probs, labels = [0.1, 0.2, 0.3, 0.9], [0, 0, 1, 1]
    # uniform, 2 bins: {.1,.2,.3} conf .2 acc 1/3; {.9} conf .9 acc 1 -> .75*(2/15) + .25*.1
    assert metrics.expected_calibration_error(probs, labels, 2, "uniform") == pytest.approx(0.125)
    # quantile, 2 bins: {.1,.2} conf .15 acc 0; {.3,.9} conf .6 acc 1 -> .5*.15 + .5*.4
    assert metrics.expected_calibration_error(probs, labels, 2, "quantile") == pytest.approx(0.275)


def test_ece_probability_one_in_last_bin():
    # Together in bin [0.9, 1]: |0.5 - 0.975| = 0.475; 1.0 alone in its own bin would give 0.525.
    assert metrics.expected_calibration_error([0.95, 1.0], [1, 0]) == pytest.approx(0.475)
    curve = metrics.reliability_curve([0.95, 1.0], [1, 0])
    np.testing.assert_array_equal(curve["count"], [2])


def test_ece_uniform_matches_loop_reference():
    rng = np.random.default_rng(0)
    p, y = rng.random(300), rng.random(300)  # soft labels
    ref = 0.0
    for k in range(10):
        m = (p >= k / 10) & (p < (k + 1) / 10)
        if m.any():
            ref += m.sum() / p.size * abs(y[m].mean() - p[m].mean())
    assert metrics.expected_calibration_error(p, y) == pytest.approx(ref, rel=1e-12)


def test_quantile_bins_keep_every_sample():
    curve = metrics.reliability_curve([0.9, 0.1, 0.5, 0.3, 0.7], [1, 0, 1, 0, 1], 2, "quantile")
    np.testing.assert_array_equal(curve["count"], [3, 2])
    np.testing.assert_allclose(curve["mean_prob"], [0.3, 0.8])
    np.testing.assert_allclose(curve["mean_label"], [1 / 3, 1.0])
    few = metrics.reliability_curve([0.2, 0.4, 0.6], [0, 1, 1], 10, "quantile")
    np.testing.assert_array_equal(few["count"], [1, 1, 1])


def test_reliability_curve_uniform_skips_empty_bins():
    curve = metrics.reliability_curve([0.05, 0.15, 0.12, 0.95], [0, 1, 0, 1], 10, "uniform")
    np.testing.assert_array_equal(curve["count"], [1, 2, 1])
    np.testing.assert_allclose(curve["mean_prob"], [0.05, 0.135, 0.95])
    np.testing.assert_allclose(curve["mean_label"], [0.0, 0.5, 1.0])


def test_preference_probabilities_both_orientations():
    probs, labels = metrics.preference_probabilities([1.0, 0.0], [0.0, 0.0])
    np.testing.assert_allclose(probs, [_sigmoid(1), 0.5, 1 - _sigmoid(1), 0.5])
    np.testing.assert_array_equal(labels, [1, 1, 0, 0])


def test_preference_ece_hand_value():
    # p = sigmoid(2) in bin 8 with label 1, 1 - p in bin 1 with label 0: each off by sigmoid(-2).
    assert metrics.preference_ece([2.0], [0.0]) == pytest.approx(_sigmoid(-2))
    assert metrics.preference_ece([2.0], [0.0], strategy="quantile") == pytest.approx(_sigmoid(-2))


def test_brier_and_nll_hand_values():
    assert metrics.brier_score([0.8, 0.3], [1, 0]) == pytest.approx(0.065)
    assert metrics.negative_log_likelihood([0.8, 0.3], [1, 0]) == pytest.approx(
        -(math.log(0.8) + math.log(0.7)) / 2
    )
    assert metrics.negative_log_likelihood([1.0], [0]) == pytest.approx(-math.log(1e-12), rel=1e-6)
    assert metrics.negative_log_likelihood([0.5], [0.25]) == pytest.approx(math.log(2))


# ---------------------------------------------------------------- metrics: ranking


def test_auroc_matches_brute_force_with_ties():
    rng = np.random.default_rng(1)
    scores, labels = rng.integers(0, 5, 60).astype(float), rng.integers(0, 2, 60)
    pos, neg = scores[labels == 1], scores[labels == 0]
    brute = np.mean([(a > b) + 0.5 * (a == b) for a in pos for b in neg])
    assert metrics.auroc(scores, labels) == pytest.approx(brute, rel=1e-12)
    assert metrics.auroc([0.1, 0.9, 0.5], [0, 1, 0]) == pytest.approx(1.0)
    assert metrics.auroc([0.1, 0.9, 0.5], [1, 0, 1]) == pytest.approx(0.0)


def test_auroc_one_class_names_counts():
    with pytest.raises(ValueError, match="3 positives and 0 negatives"):
        metrics.auroc([0.1, 0.2, 0.3], [1, 1, 1])
    with pytest.raises(ValueError, match=r"labels\[2\]"):
        metrics.auroc([0.1, 0.2, 0.3], [1, 0, 0.5])


def test_spearman_and_kendall_match_references():
    rng = np.random.default_rng(2)
    x = rng.normal(size=40)
    y = x + rng.normal(size=40)
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    assert metrics.spearman(x, y) == pytest.approx(np.corrcoef(rx, ry)[0, 1], rel=1e-12)
    sign = np.sign(np.subtract.outer(x, x)) * np.sign(np.subtract.outer(y, y))
    tau = sign[np.triu_indices(40, 1)].mean()
    assert metrics.kendall(x, y) == pytest.approx(tau, rel=1e-12)
    assert metrics.spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)


# ---------------------------------------------------------------- metrics: validation


@pytest.mark.parametrize(
    "fn",
    [metrics.pairwise_accuracy, metrics.mean_margin, metrics.brier_score, metrics.auroc,
     metrics.spearman],
)
def test_length_mismatch_names_both_lengths(fn):
    with pytest.raises(ValueError, match="length 3.*length 2"):
        fn([0.1, 0.2, 0.3], [0.0, 1.0])


def test_nan_names_index():
    with pytest.raises(ValueError, match=r"chosen\[1\] = nan"):
        metrics.pairwise_accuracy([1.0, float("nan"), 2.0], [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"rewards\[2\]"):
        metrics.reward_stats(torch.tensor([1.0, 2.0, float("nan")]))


def test_probs_out_of_range_names_index_and_value():
    with pytest.raises(ValueError, match=r"probs\[1\] = 1\.3"):
        metrics.expected_calibration_error([0.2, 1.3, -0.1], [0, 1, 1])
    with pytest.raises(ValueError, match=r"labels\[0\] = -1\.0"):
        metrics.brier_score([0.2, 0.5], [-1, 1])


def test_empty_and_bad_options_raise():
    with pytest.raises(ValueError, match="empty"):
        metrics.reward_stats([])
    with pytest.raises(ValueError, match="strategy"):
        metrics.expected_calibration_error([0.5], [1], strategy="equal")
    with pytest.raises(ValueError, match="n_bins"):
        metrics.expected_calibration_error([0.5], [1], n_bins=0)
    with pytest.raises(ValueError, match="constant"):
        metrics.kendall([1, 1, 1], [1, 2, 3])


# ---------------------------------------------------------------- selective prediction, calibration


def test_risk_coverage_by_hand_and_ties_averaged():
    coverage, risk = metrics.risk_coverage_curve([0.1, 0.9, 0.5, 0.3], [0, 1, 1, 0])
    np.testing.assert_allclose(coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0, 0, 1 / 3, 2 / 4])
    assert metrics.area_under_risk_coverage([0.1, 0.9, 0.5, 0.3], [0, 1, 1, 0]) == pytest.approx((0 + 0 + 1 / 3 + 0.5) / 4)
    # constant uncertainty: no order is implied, so every coverage has the overall error rate
    _, flat = metrics.risk_coverage_curve([0.0] * 4, [1, 0, 0, 0])
    np.testing.assert_allclose(flat, [0.25] * 4)
    # an uncertainty that ranks every error last gives the lowest possible area
    perfect = metrics.area_under_risk_coverage([0, 1, 2, 3], [0, 0, 1, 1])
    assert perfect < metrics.area_under_risk_coverage([3, 2, 1, 0], [0, 0, 1, 1])


def test_bootstrap_interval_covers_the_statistic_and_narrows_with_data():
    rng = np.random.default_rng(0)
    small, large = rng.normal(1.0, 1.0, 50), rng.normal(1.0, 1.0, 5000)
    lo_s, hi_s = metrics.bootstrap_interval(np.mean, small, n_resamples=500)
    lo_l, hi_l = metrics.bootstrap_interval(np.mean, large, n_resamples=500)
    assert lo_s < small.mean() < hi_s and lo_l < 1.0 < hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 5  # width ~ 1/sqrt(n): 10x more data, ~1/10 the width
    with pytest.raises(ValueError, match="arrays\\[1\\] has length 3"):
        metrics.bootstrap_interval(metrics.auroc, [0.1, 0.2], [0, 1, 1])


def test_both_orientations():
    probs, labels = metrics.both_orientations([0.9, 0.2])
    np.testing.assert_allclose(probs, [0.9, 0.2, 0.1, 0.8])
    np.testing.assert_allclose(labels, [1, 1, 0, 0])
    with pytest.raises(ValueError, match=r"p_chosen\[1\] = 1.5"):
        metrics.both_orientations([0.5, 1.5])


def test_fit_temperature_recovers_the_overconfidence_factor():
    from nexus.calibration import fit_temperature

    rng = np.random.default_rng(0)
    true_logits = rng.normal(0.0, 2.0, 20_000)
    wins = rng.random(true_logits.size) < 1 / (1 + np.exp(-true_logits))  # outcomes drawn from the truth
    reported = 3.0 * true_logits  # a model three times too confident
    logits_of_winner = np.where(wins, reported, -reported)  # log-odds that the preferred one wins
    assert fit_temperature(logits_of_winner) == pytest.approx(3.0, rel=0.05)
    assert fit_temperature(np.where(wins, true_logits, -true_logits)) == pytest.approx(1.0, rel=0.05)
    with pytest.raises(ValueError, match="finite"):
        fit_temperature(np.array([1.0, np.nan]))


def test_processbench_by_hand():
    scores = [[0.9, 0.2, 0.1], [0.9, 0.8], [0.3, 0.9], [0.8, 0.9, 0.95], [0.6, 0.4]]
    truth = [1, None, 1, None, None]
    # erroneous: [1 found at 1: hit, found 0 but truth 1: miss]; correct: [hit, hit, found 1: miss]
    out = metrics.processbench(scores, truth)
    assert out["error_accuracy"] == 0.5 and out["correct_accuracy"] == pytest.approx(2 / 3)
    assert out["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert metrics.first_error_index([0.9, 0.7], threshold=0.8) == 1
    with pytest.raises(ValueError, match="2 solutions but 1"):
        metrics.processbench(scores[:2], truth[:1])

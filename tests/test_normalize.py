"""Reward normalisers: Welford/Chan statistics against numpy, each normaliser by hand, and the
`set_normalizer` hook (applied by score, kept out of compare, saved with the checkpoint)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import nexus
from nexus.base import RewardOutput
from nexus.normalize import (BatchStandardize, Chain, Clip, FixedStandardize, RunningMeanStd,
                             RunningStandardize, as_normalizer, merge_all)


def stream(rng: np.random.Generator, sizes: list[int], offset: float = 0.0, scale: float = 1.0) -> list[np.ndarray]:
    return [offset + scale * rng.standard_normal(n) for n in sizes]


def assert_matches_numpy(stats: RunningMeanStd, values: np.ndarray, rtol: float = 1e-10) -> None:
    assert stats.count == len(values)
    assert stats.mean == pytest.approx(np.mean(values), rel=rtol, abs=1e-12)
    assert stats.var == pytest.approx(np.var(values), rel=rtol)
    assert stats.sample_var == pytest.approx(np.var(values, ddof=1), rel=rtol)
    assert stats.std == pytest.approx(np.std(values), rel=rtol)


# ---------------------------------------------------------------- RunningMeanStd

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_welford_matches_numpy_on_random_streams(seed):
    rng = np.random.default_rng(seed)
    batches = stream(rng, [1, 7, 0, 64, 1, 1, 300], offset=rng.uniform(-5, 5), scale=rng.uniform(0.1, 10))
    stats = RunningMeanStd()
    for batch in batches:
        stats.update(torch.as_tensor(batch))  # tensors, arrays, lists and floats all enter
    stats.update([2.5]).update(-1.0)
    assert_matches_numpy(stats, np.concatenate([*batches, [2.5, -1.0]]))


def test_merging_two_streams_equals_one_stream():
    rng = np.random.default_rng(7)
    a_batches, b_batches = stream(rng, [5, 1, 40], offset=3.0), stream(rng, [100, 2], offset=-8.0, scale=4.0)
    a, b = RunningMeanStd(), RunningMeanStd()
    for batch in a_batches:
        a.update(batch)
    for batch in b_batches:
        b.update(batch)
    everything = np.concatenate(a_batches + b_batches)
    assert_matches_numpy(a.merge(b), everything)
    assert_matches_numpy(b.merge(a), everything)  # order does not matter
    assert a.count == 46 and b.count == 102  # merge returns a new object, leaving both unchanged
    assert_matches_numpy(RunningMeanStd().merge(a), np.concatenate(a_batches))  # empty is the identity
    chunks = np.array_split(everything, 5)
    assert_matches_numpy(merge_all(RunningMeanStd().update(c) for c in chunks), everything)


@pytest.mark.parametrize("batch, n", [(1, 5_000), (100, 50_000)])
def test_welford_is_stable_under_a_large_offset(batch, n):
    rng = np.random.default_rng(3)
    values = 1e9 + rng.standard_normal(n)
    stats = RunningMeanStd()
    for start in range(0, len(values), batch):
        stats.update(values[start:start + batch])
    assert stats.var == pytest.approx(np.var(values), rel=1e-6)
    assert abs(stats.mean - np.mean(values)) < 1e-5  # a hundred-thousandth of a standard deviation
    # The textbook one-pass formula E[x^2] - E[x]^2 cancels catastrophically here, so the check has teeth.
    naive = np.mean(values ** 2) - np.mean(values) ** 2
    assert abs(naive - np.var(values)) > 1.0


def test_statistics_validate_their_input():
    with pytest.raises(ValueError, match=r"values\[2\] is nan: rewards must be finite"):
        RunningMeanStd().update([1.0, 2.0, float("nan")])
    with pytest.raises(ValueError, match="RunningMeanStd.count must be an integer >= 0"):
        RunningMeanStd(count=-1)
    with pytest.raises(ValueError, match="RunningMeanStd.m2 must be >= 0.0"):
        RunningMeanStd(count=2, mean=0.0, m2=-1.0)
    stats = RunningMeanStd().update([1.0, 2.0, 4.0])
    assert RunningMeanStd(**json.loads(json.dumps(stats.to_dict()))) == stats
    assert RunningMeanStd().update([3.0]).var == 0.0 and stats.sync() is stats  # no process group: no-op


def _sync_worker(rank: int, init_file: str, chunks: list, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=len(chunks))
    try:
        stats = RunningMeanStd().update(chunks[rank]).sync()
        Path(out_dir, f"{rank}.json").write_text(json.dumps(stats.to_dict()))
    finally:
        dist.destroy_process_group()


def test_sync_merges_statistics_across_processes(tmp_path):
    rng = np.random.default_rng(11)
    chunks = [list(5.0 + rng.standard_normal(30)), list(-2.0 + 3 * rng.standard_normal(70))]
    torch.multiprocessing.start_processes(_sync_worker, args=(str(tmp_path / "store"), chunks, str(tmp_path)),
                                          nprocs=2, start_method="spawn")
    for rank in range(2):
        stats = RunningMeanStd(**json.loads((tmp_path / f"{rank}.json").read_text()))
        assert_matches_numpy(stats, np.concatenate(chunks))


# ---------------------------------------------------------------- normalisers by hand

def test_batch_standardize():
    z = BatchStandardize(eps=1e-12)(torch.tensor([1.0, 2.0, 3.0]))  # mean 2, population std sqrt(2/3)
    torch.testing.assert_close(z, torch.tensor([-1.0, 0.0, 1.0]) / (2 / 3) ** 0.5)
    assert BatchStandardize()(torch.tensor([5.0])).tolist() == [0.0]  # a call of one: always 0


def test_clip():
    torch.testing.assert_close(Clip(-1.0, 2.0)(torch.tensor([-3.0, 0.5, 9.0])), torch.tensor([-1.0, 0.5, 2.0]))
    torch.testing.assert_close(Clip(high=0.0)(torch.tensor([-3.0, 1.0])), torch.tensor([-3.0, 0.0]))


def test_fixed_standardize_fits_a_reference_set():
    fixed = FixedStandardize.fit([1.0, 3.0], eps=0.0)  # mean 2, population std 1
    assert (fixed.mean, fixed.std, fixed.count) == (2.0, 1.0, 2)
    torch.testing.assert_close(fixed(torch.tensor([5.0, 2.0])), torch.tensor([3.0, 0.0]))


def test_running_standardize_updates_then_standardises():
    running = RunningStandardize(eps=1e-12)
    torch.testing.assert_close(running(torch.tensor([1.0, 3.0])), torch.tensor([-1.0, 1.0]))
    # Now over [1, 3, 5]: mean 3, population std sqrt(8/3).
    torch.testing.assert_close(running(torch.tensor([5.0])), torch.tensor([2.0 / (8 / 3) ** 0.5]))
    frozen = RunningStandardize(running.stats.to_dict(), update=False, eps=1e-12)
    frozen(torch.tensor([100.0]))
    assert frozen.stats.count == 3


def test_chain_and_uncertainty_scaling():
    chain = Chain([FixedStandardize(mean=1.0, std=2.0, eps=0.0), Clip(-1.0, 1.0)])
    out = chain.apply(RewardOutput(torch.tensor([0.0, 9.0]), uncertainty=torch.tensor([2.0, 4.0])))
    torch.testing.assert_close(out.rewards, torch.tensor([-0.5, 1.0]))
    torch.testing.assert_close(out.uncertainty, torch.tensor([1.0, 2.0]))  # divided by the std; clipping keeps it
    torch.testing.assert_close(out.extras["raw_rewards"], torch.tensor([0.0, 9.0]))


@pytest.mark.parametrize("normalizer", [
    BatchStandardize(eps=1e-6), Clip(-2.0, None), FixedStandardize(0.5, 2.0, count=10),
    RunningStandardize(RunningMeanStd(3, 1.0, 2.0), update=False),
    Chain([FixedStandardize(0.0, 3.0), Clip(-5.0, 5.0)]),
])
def test_every_normaliser_round_trips_through_its_config(normalizer):
    config = json.loads(json.dumps(normalizer.to_config()))
    rebuilt = as_normalizer(config)
    assert type(rebuilt) is type(normalizer) and rebuilt.to_config() == normalizer.to_config()
    x = torch.tensor([-4.0, 0.0, 1.5, 7.0])
    torch.testing.assert_close(rebuilt(x), normalizer(x))


@pytest.mark.parametrize("build, message", [
    (lambda: Clip(), "Clip: give low, high or both"),
    (lambda: Clip(3.0, 1.0), "Clip: low \\(3.0\\) > high \\(1.0\\)"),
    (lambda: FixedStandardize(0.0, 0.0), "FixedStandardize.std must be > 0.0"),
    (lambda: FixedStandardize(float("inf"), 1.0), "FixedStandardize.mean must be a finite number"),
    (lambda: FixedStandardize.fit([1.0]), "needs at least 2 reference rewards, got 1"),
    (lambda: FixedStandardize.fit([2.0, 2.0, 2.0]), "all 3 reference rewards equal 2.0"),
    (lambda: BatchStandardize(eps=0.0), "BatchStandardize.eps must be > 0.0"),
    (lambda: Chain([]), "Chain needs at least one normaliser"),
    (lambda: as_normalizer({"kind": "zscore"}),
     "unknown normaliser kind 'zscore'; known: batch, chain, clip, fixed, running"),
    (lambda: as_normalizer({"kind": "fixed", "mu": 1}),
     "normalizer \\(kind 'fixed'\\): .*unexpected keyword argument 'mu'"),
    (lambda: as_normalizer({"kind": "chain", "steps": [{"kind": "clip"}]}), "Clip: give low, high or both"),
    (lambda: as_normalizer({"kind": "chain", "steps": [3]}), "Chain.steps\\[0\\]: expected a Normalizer or a dict"),
])
def test_normaliser_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()


# ---------------------------------------------------------------- the hook on every reward model

PROMPTS = ["1 + 2", "3 - 1", "4 + 4", "9 - 3", "2 + 2", "7 - 7"]
RESPONSES = ["1 + 2 = 3", "3 - 1 = 2", "4 + 4 = 9", "", "2 + 2 = 4\nok", "7 - 7 = 0"]


def test_fixed_statistics_are_applied_by_score_and_saved(tmp_path, scalar_rm):
    raw = scalar_rm.score(PROMPTS, RESPONSES).rewards.double()
    compare_before = scalar_rm.compare(PROMPTS, RESPONSES, RESPONSES[::-1])
    scalar_rm.set_normalizer(FixedStandardize.measure(scalar_rm, PROMPTS, RESPONSES))
    normalised = scalar_rm.score(PROMPTS, RESPONSES)
    torch.testing.assert_close(normalised.rewards.double(), (raw - raw.mean()) / raw.std(unbiased=False),
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(normalised.extras["raw_rewards"].double(), raw)
    torch.testing.assert_close(scalar_rm.score(PROMPTS, RESPONSES, normalize=False).rewards.double(), raw)
    # compare stays Bradley-Terry on the raw rewards.
    torch.testing.assert_close(scalar_rm.compare(PROMPTS, RESPONSES, RESPONSES[::-1]), compare_before)
    path = scalar_rm.save_pretrained(tmp_path / "rm")
    config = json.loads((path / "config.json").read_text())["saved_state"]["normalizer"]
    assert config["kind"] == "fixed" and config["count"] == len(PROMPTS)
    loaded = nexus.load(path)
    torch.testing.assert_close(loaded.score(PROMPTS[:1], RESPONSES[:1]).rewards, normalised.rewards[:1],
                               atol=1e-5, rtol=0)


def test_running_statistics_continue_after_loading(tmp_path, scalar_rm):
    scalar_rm.set_normalizer({"kind": "running"})
    scalar_rm.score(PROMPTS[:4], RESPONSES[:4])
    loaded = nexus.load(scalar_rm.save_pretrained(tmp_path / "rm"))
    assert loaded.normalizer.stats.count == 4
    loaded.score(PROMPTS[4:], RESPONSES[4:])
    raw = scalar_rm.score(PROMPTS, RESPONSES, normalize=False).rewards.double().numpy()
    assert loaded.normalizer.stats.count == 6
    assert loaded.normalizer.stats.mean == pytest.approx(raw.mean(), abs=1e-6)
    assert loaded.set_normalizer(None).normalizer is None

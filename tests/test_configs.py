"""Every Hydra config composes; every model config instantiates on a tiny backbone."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest
from hydra.utils import instantiate

from nexus.base import RewardModel
from tests.conftest import compose_train

CONF = Path(__file__).resolve().parents[1] / "experiments" / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group", ["model", "backbone", "data", "trainer", "logger"])
def test_every_option_composes(tmp_path, group):
    for option in options(group):
        overrides = [f"{group}={option}"]
        if option == "local":
            overrides.append("backbone.name_or_path=/nonexistent")
        if option == "jsonl":
            overrides.append("data.train_file=train.jsonl")
        if option == "hf":
            overrides.append("data.path=trl-lib/ultrafeedback_binarized")
        cfg = compose_train(tmp_path, overrides)
        assert cfg[group] is not None


@pytest.mark.parametrize("model", options("model"))
def test_every_model_instantiates_and_scores(tmp_path, model):
    cfg = compose_train(tmp_path, [f"model={model}", "backbone=tiny-llama"])
    rm = instantiate(cfg.model)  # the model config nests the backbone group's choice
    assert isinstance(rm, RewardModel)
    if model != "rules":
        assert rm.backbone.source == "tiny-llama"
    out = rm.score(["1 + 1", "2 - 1"], ["1 + 1 = 2", ""])
    assert out.rewards.shape == (2,)


def test_trainer_config_builds_training_arguments(tmp_path):
    cfg = compose_train(tmp_path, [])
    args = instantiate(cfg.trainer, report_to="none")
    assert args.loss == "bt" and args.output_dir.startswith(str(tmp_path))


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes_and_resolves(tmp_path, experiment):
    from omegaconf import OmegaConf

    from tests.conftest import compose_config

    cfg = compose_config(tmp_path, "run", [f"experiment={experiment}"])
    assert cfg.experiment.name == experiment
    resolved = OmegaConf.to_container(cfg, resolve=True)  # every interpolation has a target
    assert resolved["trainer"]["output_dir"].startswith(str(tmp_path))
    args = instantiate(cfg.trainer, report_to="none")
    assert args.seed == cfg.seed


# `basic` is Hydra's own (a YAML of that name would shadow its schema and warn on every run).
@pytest.mark.parametrize("launcher", ["basic", *sorted(p.stem for p in (CONF / "hydra" / "launcher").glob("*.yaml"))])
def test_every_launcher_composes(tmp_path, launcher):
    from tests.conftest import compose_config

    cfg = compose_config(tmp_path, "run", [f"hydra/launcher={launcher}"])
    target = cfg.hydra.launcher._target_
    assert cfg.hydra.runtime.choices["hydra/launcher"] == launcher and target.endswith("Launcher")
    module, name = target.rsplit(".", 1)
    if launcher == "basic" or _importable(module):  # the plugins are installed only on demand
        assert hasattr(importlib.import_module(module), name)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def test_every_experiment_has_a_debug_config():
    assert options("experiment") == options("debug"), "add experiments/conf/debug/<name>.yaml for a new experiment"


@pytest.mark.slow
@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_runs_from_the_command_line_with_its_debug_config(tmp_path, experiment):
    """`python -m experiments.run experiment=X +debug=X` in a fresh process: the whole study, tiny."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-m", "experiments.run", f"experiment={experiment}", f"+debug={experiment}",
                           f"hydra.run.dir={tmp_path}"], cwd=CONF.parents[1], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["rows"], "no result rows"
    assert (tmp_path / "results.md").stat().st_size > 0 and (tmp_path / "config.yaml").is_file()
    assert list(tmp_path.glob("*.png")), "no plot written"


def test_policies_are_configs_that_a_study_can_switch(tmp_path):
    from tests.conftest import compose_config

    cfg = compose_config(tmp_path, "run", ["experiment=compare_rms"])
    policy = instantiate(cfg.experiment.policy)
    assert (type(policy).__name__, policy.name, policy.error_rate) == ("ArithmeticPolicy", "arithmetic", 0.3)
    samples = policy.generate(["12 + 7"], n=3, seed=0)
    # the last line is "12 + 7 = z" in one of the policy's equivalent formats (no spaces, operands swapped)
    lines = [re.sub(r"^Step\d+:", "", s.splitlines()[-1].replace(" ", "")) for s in samples[0]]
    assert len(lines) == 3 and all(line.startswith(("12+7=", "7+12=")) for line in lines)
    cfg = compose_config(tmp_path, "run", ["experiment=bon_overoptimization", "policy@experiment.policy=causal_lm",
                                           "~experiment.policy.error_rate", "experiment.policy.name_or_path=arith-lm",
                                           "experiment.policy.temperature=0.5"])
    policy = instantiate(cfg.experiment.policy)
    assert (type(policy).__name__, policy.name, policy.temperature) == ("HFPolicy", "arith-lm", 0.5)


def test_the_study_registry_is_the_experiment_group():
    from experiments.run import studies, study

    assert studies() == options("experiment")
    assert all(callable(study(name)) for name in studies())
    with pytest.raises(ValueError, match="experiment.name='nope': expected one of"):
        study("nope")

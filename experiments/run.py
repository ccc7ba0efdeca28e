"""Run a study: `python -m experiments.run experiment=ensemble_uncertainty [key=value ...]`.

The studies are the files of experiments/conf/experiment/: each names its study in
`experiment.name`, and the study is the `run(cfg, out_dir)` of the module `experiments.<name>`.
The study writes its tables, CSV and plots into the Hydra run directory.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

import hydra
from omegaconf import DictConfig

from experiments.common import check_experiment_sizes, group_options, save_config


def studies() -> list[str]:
    """Every study's name: the options of the `experiment` config group."""
    return sorted(group_options("experiment"))


def study(name: str) -> Callable[[DictConfig, Path], object]:
    """The `run` of study `name`, imported only now, so one study's imports don't slow another."""
    if name not in studies():
        raise ValueError(f"experiment.name={name!r}: expected one of {studies()}")
    return importlib.import_module(f"experiments.{name}").run


@hydra.main(config_path="conf", config_name="run", version_base="1.3")
def main(cfg: DictConfig) -> None:
    out_dir = Path(hydra.core.hydra_config.HydraConfig.get().runtime.output_dir)
    run = study(cfg.experiment.name)
    check_experiment_sizes(cfg.experiment)
    save_config(cfg, out_dir)
    run(cfg, out_dir)


if __name__ == "__main__":
    main()

"""Run a study: `python -m experiments.run experiment=ensemble_uncertainty [key=value ...]`.

Each experiment config (experiments/conf/experiment/) names its study in `experiment.name`;
the study writes its tables, CSV and plots into the Hydra run directory.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from experiments.common import check_experiment_sizes, save_config


def studies() -> dict:
    """Study name -> `run(cfg, out_dir)`; imported lazily so one study's imports don't slow another."""
    from experiments import bon_overoptimization, compare_rms, ensemble_uncertainty, humaneval_bon, process_vs_outcome
    from experiments import active_learning, distill, generative_judge

    return {"ensemble_uncertainty": ensemble_uncertainty.run, "process_vs_outcome": process_vs_outcome.run,
            "humaneval_bon": humaneval_bon.run, "compare_rms": compare_rms.run,
            "bon_overoptimization": bon_overoptimization.run, "distill": distill.run,
            "active_learning": active_learning.run, "generative_judge": generative_judge.run}


@hydra.main(config_path="conf", config_name="run", version_base="1.3")
def main(cfg: DictConfig) -> None:
    out_dir = Path(hydra.core.hydra_config.HydraConfig.get().runtime.output_dir)
    known = studies()
    if cfg.experiment.name not in known:
        raise ValueError(f"experiment.name={cfg.experiment.name!r}: expected one of {sorted(known)}")
    check_experiment_sizes(cfg.experiment)
    save_config(cfg, out_dir)
    known[cfg.experiment.name](cfg, out_dir)


if __name__ == "__main__":
    main()

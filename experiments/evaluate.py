"""Evaluate a saved reward model: `python -m experiments.evaluate checkpoint=PATH [data=...]`.

Writes metrics.json/.csv, results.md and reliability.png into the Hydra run directory.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

import nexus
from experiments.common import evaluation_report, load_data, save_config


@hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    out_dir = Path(hydra.core.hydra_config.HydraConfig.get().runtime.output_dir)
    save_config(cfg, out_dir)
    rm = nexus.load(cfg.checkpoint)
    table = evaluation_report(rm, load_data(cfg.data).evals, out_dir, {"model": rm.model_type, "checkpoint": cfg.checkpoint})
    print(f"\nevaluation of {cfg.checkpoint} ({out_dir}):\n{table}", flush=True)


if __name__ == "__main__":
    main()

"""Serve a reward model over HTTP through Hydra: `python -m experiments.serve checkpoint=PATH [...]`.

The settings are experiments/conf/serve.yaml (the same keys `python -m nexus.serve` takes; see
`nexus.serve.cli`), so a config file or a config group can set them.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf


@hydra.main(config_path="conf", config_name="serve", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from nexus.serve.cli import LOAD_OPTIONS, run_server
    from nexus.serve.config import ServeConfig

    values = OmegaConf.to_container(cfg, resolve=True)
    status = run_server(values["checkpoint"], ServeConfig.from_mapping(values), log_level=str(values["log_level"]),
                        **{key: values[key] for key in LOAD_OPTIONS})
    if status:
        sys.exit(status)


if __name__ == "__main__":
    main()

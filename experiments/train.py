"""Train a reward model: `python -m experiments.train model=scalar backbone=arith-lm ...`.

Writes into the Hydra run directory: config.yaml, the final model (`model/`,
safetensors + config.json), metrics.json/.csv, results.md and reliability.png. Without evaluation
sets (`data=jsonl` with no `data.eval_files`) the report holds the training metrics alone (one row,
`eval_set: none`) and there is no reliability plot.
"""

from __future__ import annotations

import time
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig
from transformers import set_seed

from experiments.common import (calibrate, configure_logger, job_folder, evaluation_report, load_data, save_config,
                                standardize_ensemble)
from nexus.checkpoint import check_save_target
from nexus.training import RewardTrainer


def run(cfg: DictConfig, out_dir: Path):
    """Train, save and evaluate; returns the trained model (tests call this directly)."""
    set_seed(cfg.seed)
    model = instantiate(cfg.model)  # the model config nests the run's backbone
    # Refuse a save_dir holding someone else's files now, not after the training it would waste.
    check_save_target(Path(cfg.save_dir), type(model), overwrite=True)
    data = load_data(cfg.data, model.data_format)
    pairwise = model.data_format == "pairwise"
    # Mid-training evaluation reads the training format, so it runs for pairwise families only;
    # every family gets the held-out pairwise evaluation at the end.
    overrides = {} if pairwise and data.evals else {"eval_strategy": "no"}
    if not data.evals:
        print("no evaluation sets (data.eval_files is empty): no evaluation during training, and the "
              "report holds the training metrics only", flush=True)
    args = instantiate(cfg.trainer, report_to=configure_logger(cfg.logger, job_folder(out_dir)), **overrides)
    first_eval = next(iter(data.evals.values()), None) if pairwise else None
    trainer = RewardTrainer(model=model, args=args, train_dataset=data.train, eval_dataset=first_eval)
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=cfg.resume_from_checkpoint)
    train_seconds = time.perf_counter() - start
    print(f"trained {model.model_type} on world_size={args.world_size} process(es) in {train_seconds:.1f} s", flush=True)
    if not trainer.is_world_process_zero():
        return model
    save_config(cfg, out_dir)
    standardize_ensemble(model, data.calibration)  # an ensemble's members, before the temperature reads them
    temperature = calibrate(model, data.calibration)
    if temperature is not None:
        print(f"preference temperature fitted on {len(data.calibration)} validation pairs: {temperature:.3f}")
    model.save_pretrained(cfg.save_dir, overwrite=True)  # the run's own model: a rerun in its folder replaces it
    examples_per_s = result.metrics["train_samples_per_second"]
    columns = {"model": model.model_type, "backbone": cfg.backbone.name_or_path,
               "train_examples": len(data.train), "train_loss": round(result.training_loss, 4),
               "train_examples_per_s": round(examples_per_s, 1), "train_s": round(train_seconds, 1)}
    table = evaluation_report(model, data.evals, out_dir, columns)
    heading = "held-out evaluation" if data.evals else "training only, no evaluation sets"
    print(f"\n{heading} ({out_dir}):\n{table}\nmodel saved to {cfg.save_dir}", flush=True)
    return model


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(cfg, Path(hydra.core.hydra_config.HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()

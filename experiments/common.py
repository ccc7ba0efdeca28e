"""Shared pieces of the entry points: config groups and derived run configs, data from a config,
evaluation tables, logger setup, RM training."""

from __future__ import annotations

import copy
import dataclasses
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from omegaconf import DictConfig, OmegaConf, open_dict

from nexus.tasks import arithmetic
from nexus.data.formats import PairwiseExample, read_jsonl, read_pairwise
from nexus.data.formats import flip_preferences
from nexus.calibration import UninformativePairsError
from nexus.evaluation import pairwise_report, score_pairs
from nexus.reporting import plot_reliability, write_report
from nexus.validation import check_config_sizes, check_positive_int


CONF = Path(__file__).resolve().parent / "conf"


def group_options(group: str, extra_dirs: list | None = None) -> dict[str, Path]:
    """Option name -> YAML of a config group (`model`, `backbone`, `policy`, `experiment`, ...): the
    files of experiments/conf/<group>/, then those of `extra_dirs` (a name there replaces a built-in one)."""
    dirs = [CONF / group, *(Path(d) for d in extra_dirs or [])]
    for folder in dirs[1:]:
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a folder (of {group} configs)")
    return {p.stem: p for folder in dirs for p in sorted(folder.glob("*.yaml"))}


def group_config(group: str, name: str, extra_dirs: list | None = None) -> DictConfig:
    """The contents of one option of a config group, e.g. `group_config("model", "scalar")`."""
    options = group_options(group, extra_dirs)
    if name not in options:
        raise ValueError(f"{group}={name!r}: expected one of {sorted(options)}")
    return OmegaConf.load(options[name])


def derive_config(cfg: DictConfig, replace: Mapping | None = None, **merge) -> DictConfig:
    """A copy of the run config with sections replaced (`replace={"model": group_config(...)}`) and
    then sections merged with overrides (`trainer={"max_steps": 2}`; None merges nothing).

    The copy keeps the run's root, so interpolations such as a model YAML's `backbone: ${backbone}`
    or `${seed}` resolve against the derived sections: `instantiate(derived.model)` builds the
    model on the derived backbone.
    """
    out = copy.deepcopy(cfg)
    with open_dict(out):
        for key, value in (replace or {}).items():
            out[key] = value
        for key, value in merge.items():
            out[key] = OmegaConf.merge(out[key], value or {})
    return out


# Integer sizes of the config sections and their smallest allowed values (a key a study does not
# use is simply absent). Lists of sizes (`ns`, `n_members`, `n_labels`) are checked element-wise.
DATA_SIZES = {"n_train": 1, "n_eval": 1, "n_calibration": 0}
EXPERIMENT_SIZES = {
    "n_pool": 1, "n_eval": 1, "seed_size": 1, "acquire": 1, "rounds": 1, "pair_draws": 2, "n_problems": 1,
    "n_candidates": 1, "bootstrap_resamples": 1, "n_train_problems": 1, "n_test_problems": 1, "n_train": 1,
    "n_pairs": 1, "max_train_tasks": 1, "max_test_tasks": 1, "train_samples": 1, "workers": 1,
}
EXPERIMENT_SIZE_LISTS = {"ns": 1, "n_members": 1, "n_labels": 1}


def check_experiment_sizes(exp: DictConfig) -> None:
    """Raise ValueError naming `experiment.<key>` for a size out of range: the counts of
    `EXPERIMENT_SIZES`, every entry of the lists of `EXPERIMENT_SIZE_LISTS`, and best-of-n sizes
    `ns` no larger than the pool, `n_candidates`."""
    check_config_sizes(exp, EXPERIMENT_SIZES, "experiment")
    for key, minimum in EXPERIMENT_SIZE_LISTS.items():
        values = exp.get(key)
        if values is None or not OmegaConf.is_list(values) and not isinstance(values, (list, tuple)):
            continue
        if not values:
            raise ValueError(f"experiment.{key}=[]: expected a non-empty list of integers >= {minimum}")
        for i, value in enumerate(values):
            check_positive_int(f"experiment.{key}[{i}]", value, minimum)
    if exp.get("ns") and exp.get("n_candidates") is not None and max(exp.ns) > exp.n_candidates:
        raise ValueError(f"experiment.ns: max {max(exp.ns)} exceeds experiment.n_candidates={exp.n_candidates} "
                         "(best-of-n draws n of the N candidates of a pool)")


@dataclass
class RunData:
    """The pairs a run uses: training, named evaluation sets, and an optional validation set
    on which the temperature of the preference probability is fitted."""

    train: list[PairwiseExample]
    evals: dict[str, list[PairwiseExample]]
    calibration: list[PairwiseExample] | None = None


def load_data(data: DictConfig, train_format: str = "pairwise") -> RunData:
    """The data named by the `data` config group: training examples in `train_format`
    (pairwise, outcome or process: what the model trains on), evaluation pairs always pairwise."""
    if data.name == "arithmetic":
        return arithmetic_data(data, train_format)
    if data.name == "jsonl":
        calibration = read_pairwise(data.calibration_file) if data.get("calibration_file") else None
        return RunData(read_jsonl(data.train_file, train_format),
                        {k: read_pairwise(v) for k, v in data.eval_files.items()}, calibration)
    if data.name == "hf":
        from nexus.data.hf import load_hf

        common = dict(subset=data.get("subset"), revision=data.get("revision"), streaming=data.get("streaming", False),
                      columns=OmegaConf.to_container(data.columns) if data.get("columns") else None)
        train = load_hf(data.path, split=data.split, kind=train_format, limit=data.get("max_train_rows"), **common)
        return RunData(*hf_evaluation(data, train, train_format, common))
    raise ValueError(f"data.name={data.name!r}: expected 'arithmetic', 'jsonl' or 'hf'")


def hf_evaluation(data: DictConfig, train: list, train_format: str, common: dict) -> tuple[list, dict]:
    """(training examples, evaluation pairs) of `data=hf`. A single data file has no splits (every
    split name reads all of its rows), so its evaluation pairs come from `data.eval_path` (another
    file), or from `data.eval_fraction` of its rows held out by `seed`; an `eval_split` on one file
    alone is refused, since it would evaluate on the training rows."""
    import random

    from nexus.data.hf import FILE_BUILDERS, load_hf

    name = data.get("eval_split")
    if not name:
        return train, {}
    limit = data.get("max_eval_rows")
    if data.get("eval_path"):
        return train, {name: load_hf(data.eval_path, split=name, kind="pairwise", limit=limit, **common)}
    single_file = Path(str(data.path)).suffix.lower() in FILE_BUILDERS
    fraction = data.get("eval_fraction")
    if not single_file:
        return train, {name: load_hf(data.path, split=name, kind="pairwise", limit=limit, **common)}
    if not fraction:
        raise ValueError(f"data.path={data.path} is one data file, so data.eval_split={name} would read its training "
                         "rows again: give the evaluation file as data.eval_path, or hold rows out with "
                         "data.eval_fraction (e.g. 0.1)")
    if train_format != "pairwise":
        raise ValueError(f"data.eval_fraction holds out pairs, but this model trains on {train_format} data: give "
                         "the evaluation pairs as data.eval_path")
    if not 0 < float(fraction) < 1:
        raise ValueError(f"data.eval_fraction={fraction}: expected a fraction in (0, 1)")
    order = list(range(len(train)))
    random.Random(data.get("split_seed", 0)).shuffle(order)
    held = set(order[:max(1, round(float(fraction) * len(train)))])
    if len(held) == len(train):
        raise ValueError(f"data.eval_fraction={fraction} of {len(train)} rows leaves none to train on")
    evals = [train[i] for i in sorted(held)][:limit]
    return [ex for i, ex in enumerate(train) if i not in held], {name: evals}


def arithmetic_tasks(data: DictConfig, splits, partition: str | None, templates) -> list:
    """The task configs of `splits` (one name or a list: a mixture), in the wordings `templates`,
    drawn from `partition` when `data.partitioned` (else from every problem, as before partitions)."""
    names = [splits] if isinstance(splits, str) else list(splits)
    for i, name in enumerate(names):
        if name not in arithmetic.SPLITS:
            raise ValueError(f"data split {name!r} (index {i}): expected one of {sorted(arithmetic.SPLITS)}")
    return [dataclasses.replace(arithmetic.SPLITS[name], templates=tuple(templates),
                                partition=partition if data.get("partitioned", False) else None) for name in names]


def experiment_task(cfg: DictConfig, partition: str):
    """The task config of `experiment.split` in the data's wordings, drawn from `partition` when the
    data is partitioned (a study's training problems from "rm", its test problems from "eval")."""
    return arithmetic_tasks(cfg.data, cfg.experiment.split, partition, cfg.data.get("templates") or ["bare"])[0]


def draw(n: int, seed: int, tasks: list, kind: str = "pairwise") -> list:
    """`n` examples of format `kind` split evenly over `tasks` (each with its own seed offset)."""
    out = []
    for i, task in enumerate(tasks):
        share = n // len(tasks) + (i < n % len(tasks))
        if share:
            examples = arithmetic.generate(share, seed + 7919 * i, task)[kind]
            for example in examples:  # problem ids stay unique across the mixture's parts
                example.extra["problem_id"] += i * n
            out += examples
    return out


def arithmetic_data(data: DictConfig, train_format: str) -> RunData:
    """The built-in task's data. Training (and the validation pairs of temperature scaling) come
    from `train_split` (a split or a mixture of them) in the wordings `data.templates`; evaluation
    from each of `eval_splits`, once per wording group of `data.eval_templates` (named
    "<split>/<group>", e.g. "level2/unseen") or in the training wordings (named "<split>"). With
    `data.partitioned` the RM's problems and the evaluation problems come from disjoint partitions,
    both disjoint from the task LM's."""
    check_config_sizes(data, DATA_SIZES, "data")
    templates = data.get("templates") or ["bare"]
    train_tasks = arithmetic_tasks(data, data.train_split, "rm", templates)
    train = draw(data.n_train, data.train_seed, train_tasks, train_format)
    if train_format == "pairwise":
        train = flip_preferences(train, data.get("label_noise", 0.0), seed=data.train_seed)
    groups = data.get("eval_templates") or {}
    evals = {}
    for split in data.eval_splits:
        for group, wordings in (groups.items() if groups else [(None, templates)]):
            name = split if group is None else f"{split}/{group}"
            evals[name] = draw(data.n_eval, data.eval_seed, arithmetic_tasks(data, split, "eval", wordings))
    n_cal = data.get("n_calibration", 0)
    calibration = draw(n_cal, data.calibration_seed, train_tasks) if n_cal else None
    return RunData(train, evals, calibration)


def calibrate(rm, pairs: list[PairwiseExample] | None) -> float | None:
    """Fit the RM's preference temperature on validation pairs (None: leave T = 1).

    Too few distinct pairs is a data error and raises (`RewardModel.calibrate`); a model that ties
    too many of them (e.g. a rules RM whose scores cannot tell the two sides apart) keeps T = 1
    with a warning, so a study comparing several RMs still reports it.
    """
    if not pairs:
        return None
    try:
        return rm.calibrate([p.prompt for p in pairs], [p.chosen for p in pairs], [p.rejected for p in pairs])
    except UninformativePairsError as err:
        warnings.warn(f"{type(rm).__name__}: preference temperature left at 1: {err}", stacklevel=2)
        return None


def standardize_ensemble(rm, pairs: list[PairwiseExample] | None) -> int:
    """Standardise an ensemble's members on validation pairs' responses, chosen and rejected
    (`EnsembleRewardModel.standardize_members`); other families, or no pairs, are left as they are.

    Returns how many responses it was fitted on (0: not fitted). Call it before `calibrate`, whose
    temperature reads the standardised members.
    """
    if not pairs or not hasattr(rm, "standardize_members"):
        return 0
    prompts = [p.prompt for p in pairs]
    rm.standardize_members(prompts + prompts, [p.chosen for p in pairs] + [p.rejected for p in pairs])
    return 2 * len(pairs)


def evaluation_report(rm, evals: dict, out_dir: Path, extra_columns: dict | None = None) -> str:
    """Evaluate on every set, write metrics/table/reliability plot into `out_dir`, return the table.

    With no evaluation sets the report is one row, `eval_set: none` and `extra_columns` (what the
    caller knows, e.g. training metrics), and no plot is drawn.
    """
    if not evals:
        return write_report(out_dir, [{"eval_set": "none", **(extra_columns or {})}],
                            {"note": "no evaluation sets were given (data.eval_files is empty)"})
    rows, curves = [], {}
    for name, pairs in evals.items():
        scores = score_pairs(rm, pairs)
        rows.append({"eval_set": name, **(extra_columns or {}), **pairwise_report(scores)})
        curves[name] = scores.p_chosen
    table = write_report(out_dir, rows)
    plot_reliability(out_dir / "reliability.png", curves)
    return table


# The WANDB_DIR this module last set (a job's folder), told apart from one the user set.
_WANDB_DIR_SET: str | None = None


def job_folder(default: str | Path) -> Path:
    """The Hydra job's output folder where Hydra runs the job, else `default`."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except (ImportError, ValueError):
        return Path(default)


def configure_logger(logger: DictConfig, run_dir: str | Path | None = None) -> str:
    """Return `report_to`; wandb runs offline unless the config says otherwise, and keeps its run in
    `run_dir` (the job's folder; not the working directory, which every job of a sweep shares)
    unless the user set WANDB_DIR."""
    global _WANDB_DIR_SET
    if logger.report_to == "wandb":
        os.environ.setdefault("WANDB_MODE", logger.get("mode", "offline"))
        os.environ.setdefault("WANDB_PROJECT", logger.get("project", "nexus"))
        user_set = os.environ.get("WANDB_DIR") not in (None, _WANDB_DIR_SET)
        if run_dir is not None and not user_set:
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            os.environ["WANDB_DIR"] = _WANDB_DIR_SET = str(run_dir)
    return logger.report_to


def train_rm(rm, trainer: DictConfig, logger: DictConfig, train_dataset, output_dir: str | Path, **overrides) -> float:
    """Train `rm` with `RewardTrainer` on `train_dataset` under the `trainer` config (plus `overrides`),
    checkpoints in `output_dir`; leave it in eval mode and return the training seconds. What every
    study runs to train an RM."""
    import time

    from hydra.utils import instantiate

    from nexus.training import RewardTrainer

    report_to = configure_logger(logger, job_folder(output_dir))
    args = instantiate(trainer, output_dir=str(output_dir), report_to=report_to, **overrides)
    start = time.perf_counter()
    RewardTrainer(model=rm, args=args, train_dataset=train_dataset).train()
    seconds = time.perf_counter() - start
    rm.eval()
    return seconds


def _plain(value):
    """A JSON/wandb-friendly scalar: numpy numbers become Python ones, None stays None."""
    return value.item() if hasattr(value, "item") else value


def _numbers(tree: dict, prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a nested dict, keyed "a/b/c" (wandb's summary takes flat numbers)."""
    flat = {}
    for key, value in tree.items():
        value = _plain(value)
        if isinstance(value, dict):
            flat.update(_numbers(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)):
            flat[f"{prefix}{key}"] = value
    return flat


def log_study(cfg: DictConfig, out_dir: Path, tables: dict[str, list[dict]],
              summary: dict | None = None) -> Path | None:
    """Log a study's outputs to wandb when `logger.report_to == "wandb"` (else do nothing).

    One run per study: the resolved config, each of `tables` as a `wandb.Table` (under
    `tables/<name>`), the numbers of `summary` (nested keys joined by "/") and every PNG in
    `out_dir` as a `wandb.Image` (under `plots/<stem>`). Offline unless the logger config says
    otherwise (`wandb sync` uploads later); the run lives in `$WANDB_DIR`, else in `out_dir/wandb`.
    A run the Trainer's own wandb callback opened in this job (its training curves) is the study's
    run too, so that a job writes one run.

    Returns:
        The run's local directory (holding `files/` and the `.wandb` log), or None when off.
    """
    if cfg.logger.report_to != "wandb":
        return None
    configure_logger(cfg.logger, out_dir)
    import wandb

    config = {key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
              for key in cfg if key != "hydra"}
    name = f"{cfg.experiment.name}-{out_dir.name}"
    run = wandb.run
    if run is None:
        run = wandb.init(project=cfg.logger.get("project", "nexus"), name=name, job_type="study", config=config,
                         dir=os.environ.get("WANDB_DIR", str(out_dir)))
    else:  # the Trainer's run of this job: the study's config and results join its curves
        run.config.update(config, allow_val_change=True)
        run.name = name
    logged = {}
    for name, rows in tables.items():
        columns = list(dict.fromkeys(key for row in rows for key in row))
        data = [[_plain(row.get(c)) for c in columns] for row in rows]
        logged[f"tables/{name}"] = wandb.Table(columns=columns, data=data, allow_mixed_types=True)
    logged.update({f"plots/{png.stem}": wandb.Image(str(png)) for png in sorted(out_dir.glob("*.png"))})
    run.log(logged)
    run.summary.update(_numbers(summary or {}))
    local = Path(run.dir).parent
    run.finish()
    # wandb keeps one process-wide session that ignores later WANDB_* changes (a next run's
    # directory or mode); tear it down so the next run reads its settings afresh.
    wandb.teardown()
    return local


def save_config(cfg: DictConfig, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

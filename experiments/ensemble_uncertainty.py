"""The ensemble-uncertainty study: `python -m experiments.run experiment=ensemble_uncertainty`.

For each label-noise rate and each ensemble variant (member form, head and source of diversity),
train on `arithmetic` preferences, standardise the members on the validation pairs' responses
(`EnsembleRewardModel.standardize_members`, so that member spreads compare like with like) and
measure, for K members, on an in-distribution and a shifted split:
accuracy, calibration (ECE before and after temperature scaling, Brier, NLL), how well the
uncertainty predicts the ensemble's own mistakes (AUROC with a bootstrap interval), selective
prediction (area under the risk-coverage curve) and the mean epistemic variance.

Writes into the run directory: metrics.csv/.json, results.md (every cell), summary.md (the
findings the issue asks for), reliability_*.png, risk_coverage_*.png, epistemic.png, and
the trained models under models/. Legend: b pairs, k members.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from scipy import special
from transformers import set_seed

from experiments.common import derive_config, load_data, standardize_ensemble, train_rm
from nexus import metrics
from nexus.calibration import fit_temperature
from nexus.evaluation import score_pairs
from nexus.models.ensemble import EnsembleRewardModel, ensemble_preference_logits
from nexus.reporting import markdown_table, plot_reliability, write_report


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    return special.entr(p) + special.entr(1.0 - p)


@dataclass
class MemberScores:
    """Every member's Gaussian for both sides of each pair: four 'b k' arrays."""

    mean_c: np.ndarray
    var_c: np.ndarray
    mean_r: np.ndarray
    var_r: np.ndarray

    @classmethod
    def of(cls, rm: EnsembleRewardModel, pairs) -> "MemberScores":
        scores = score_pairs(rm, pairs)
        c, r = scores.chosen.extras, scores.rejected.extras
        return cls(*(x.double().numpy() for x in (c["member_means"], c["member_vars"],
                                                  r["member_means"], r["member_vars"])))

    def first(self, k: int) -> "MemberScores":
        """The sub-ensemble of the first k members."""
        return MemberScores(self.mean_c[:, :k], self.var_c[:, :k], self.mean_r[:, :k], self.var_r[:, :k])

    @property
    def logits(self) -> np.ndarray:
        """'b' log-odds that chosen is preferred, integrated over the members (as `compare`)."""
        parts = (torch.from_numpy(x) for x in (self.mean_c, self.var_c, self.mean_r, self.var_r))
        return ensemble_preference_logits(*parts).numpy()

    @property
    def member_probs(self) -> np.ndarray:
        """'b k' each member's probit-integrated P(chosen preferred)."""
        z = (self.mean_c - self.mean_r) / np.sqrt(1 + np.pi / 8 * (self.var_c + self.var_r))
        return special.expit(z)

    @property
    def entropy(self) -> np.ndarray:
        """'b' total predictive entropy of the ensemble's preference (the members' mean), in nats."""
        return _binary_entropy(self.member_probs.mean(axis=1))

    @property
    def mutual_information(self) -> np.ndarray:
        """'b' epistemic part of the entropy: H(mean p) - mean H(p_k) (BALD, Houlsby et al. 2011)."""
        return np.clip(self.entropy - _binary_entropy(self.member_probs).mean(axis=1), 0.0, None)

    @property
    def pair_std(self) -> np.ndarray:
        """'b' total std of r_c - r_r: spread of the member differences plus predicted variances."""
        diff = self.mean_c - self.mean_r
        return np.sqrt(diff.var(axis=1) + (self.var_c + self.var_r).mean(axis=1))

    @property
    def epistemic(self) -> np.ndarray:
        """'(2 b)' variance of the member means of every scored response."""
        return np.concatenate([self.mean_c.var(axis=1), self.mean_r.var(axis=1)])

    @property
    def aleatoric(self) -> np.ndarray:
        return np.concatenate([self.var_c.mean(axis=1), self.var_r.mean(axis=1)])


def save_scores(path: Path, sets: dict[str, MemberScores]) -> None:
    """Every member's means and variances per set, so metrics can be recomputed without training."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **{f"{name}.{field}": getattr(s, field) for name, s in sets.items()
                                 for field in ("mean_c", "var_c", "mean_r", "var_r")})


def load_scores(path: Path) -> dict[str, MemberScores]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no saved member scores (did that cell's training finish?)")
    with np.load(path) as data:
        names = sorted({key.split(".")[0] for key in data.files})
        return {n: MemberScores(*(data[f"{n}.{f}"] for f in ("mean_c", "var_c", "mean_r", "var_r"))) for n in names}


def cell_metrics(s: MemberScores, temperature: float, n_resamples: int, seed: int = 0) -> dict:
    """Every number of one (noise, variant, K, split) cell."""
    chosen, rejected = s.mean_c.mean(axis=1), s.mean_r.mean(axis=1)  # the `mean` aggregation
    errors = (chosen <= rejected).astype(np.float64)
    raw = metrics.both_orientations(special.expit(s.logits))
    calibrated = metrics.both_orientations(special.expit(s.logits / temperature))
    row = {
        "accuracy": metrics.pairwise_accuracy(chosen, rejected),
        "ece": metrics.expected_calibration_error(*raw),
        "ece_calibrated": metrics.expected_calibration_error(*calibrated),
        "temperature": temperature,
        "brier": metrics.brier_score(*raw),
        "nll": metrics.negative_log_likelihood(*raw),
        "nll_calibrated": metrics.negative_log_likelihood(*calibrated),
    }
    # Three per-pair uncertainties: the total predictive entropy of the ensemble's preference (the
    # headline), its epistemic part (mutual information), and the total std of r_c - r_r.
    for name, uncertainty in (("entropy", s.entropy), ("mi", s.mutual_information), ("reward_std", s.pair_std)):
        if 0 < errors.sum() < errors.size:
            row[f"auroc_{name}"] = metrics.auroc(uncertainty, errors)
        else:  # no mistakes (or only mistakes): nothing to detect
            row[f"auroc_{name}"] = float("nan")
        row[f"aurc_{name}"] = metrics.area_under_risk_coverage(uncertainty, errors)
    for name, uncertainty in (("entropy", s.entropy), ("mi", s.mutual_information)):
        if 0 < errors.sum() < errors.size:
            row[f"auroc_{name}_lo"], row[f"auroc_{name}_hi"] = metrics.bootstrap_interval(
                metrics.auroc, uncertainty, errors, n_resamples=n_resamples, seed=seed)
        else:
            row[f"auroc_{name}_lo"] = row[f"auroc_{name}_hi"] = float("nan")
    row["mi"] = float(s.mutual_information.mean())
    row["epistemic_var"] = float(s.epistemic.mean())
    row["aleatoric_var"] = float(s.aleatoric.mean())
    return row


def train_ensemble(cfg: DictConfig, variant: DictConfig, k: int, train_pairs, out_dir: Path) -> EnsembleRewardModel:
    """Train one ensemble of k members as `variant` says, with the run's trainer settings."""
    rm_cfg = derive_config(cfg, model=variant.get("model"), backbone=variant.get("backbone"))
    rm_cfg.model.n_members = k
    if rm_cfg.model.member_backbones is not None:
        rm_cfg.model.member_backbones = list(rm_cfg.model.member_backbones)[:k]
    if k == 1 and not variant.get("nested", False):
        rm_cfg.model.bootstrap = False  # the single-model baseline trains on all the data
    set_seed(cfg.seed)
    rm = instantiate(rm_cfg.model)
    train_rm(rm, cfg.trainer, cfg.logger, train_pairs, out_dir / "checkpoints")
    return rm


def _trained_sizes(variant: DictConfig, exp: DictConfig) -> tuple[list[int], list[int]]:
    """(the K evaluated, the K trained): a nested variant trains max K once."""
    ks = sorted(variant.get("n_members") or exp.n_members)
    return ks, ([max(ks)] if variant.get("nested", False) else ks)


def _scores_path(scores_dir: Path, noise: float, name: str, size: int) -> Path:
    return scores_dir / f"noise{noise}_{name}_k{size}.npz"


def run(cfg: DictConfig, out_dir: Path) -> list[dict]:
    """Train every cell (or, with `experiment.scores_from`, reuse a finished run's saved member
    scores), then compute the metrics, summary and plots from the saved scores."""
    exp = cfg.experiment
    timings = {}
    scores_dir = Path(exp.scores_from) / "scores" if exp.get("scores_from") else out_dir / "scores"
    for noise in exp.label_noise if not exp.get("scores_from") else ():
        data = load_data(OmegaConf.merge(cfg.data, {"label_noise": float(noise)}))
        if not data.calibration:
            raise ValueError("the study fits temperatures on data.n_calibration validation pairs; set it > 0")
        for name, variant in exp.variants.items():
            for size in _trained_sizes(variant, exp)[1]:
                start = time.perf_counter()
                rm = train_ensemble(cfg, variant, size, data.train, out_dir)
                timings[f"noise={noise} {name} k={size}"] = round(time.perf_counter() - start, 1)
                standardize_ensemble(rm, data.calibration)  # before saving: the checkpoint keeps it
                if exp.save_models:
                    rm.save_pretrained(out_dir / "models" / f"noise{noise}" / f"{name}_k{size}")
                sets = {"calibration": MemberScores.of(rm, data.calibration)}
                sets.update({split: MemberScores.of(rm, data.evals[split]) for split in exp.eval_splits})
                save_scores(_scores_path(scores_dir, noise, name, size), sets)
    rows, curves = analyse(scores_dir, exp, cfg.seed)
    write_report(out_dir, rows, {"train_seconds": timings} if timings else None)
    summary = summarize(rows, exp)
    (out_dir / "summary.md").write_text(summary + "\n")
    plot_study(out_dir, curves, exp)
    print(f"\n{markdown_table(rows)}\n\n{summary}\n\nwritten to {out_dir}", flush=True)
    return rows


def analyse(scores_dir: Path, exp: DictConfig, seed: int) -> tuple[list[dict], dict]:
    """Rows of metrics for every (noise, variant, K, split) from the saved member scores."""
    rows, curves = [], {}
    for noise in exp.label_noise:
        for name, variant in exp.variants.items():
            ks, trained = _trained_sizes(variant, exp)
            for size in trained:
                sets = load_scores(_scores_path(scores_dir, noise, name, size))
                for k in (ks if variant.get("nested", False) else [size]):
                    temperature = fit_temperature(sets["calibration"].first(k).logits)
                    for split in exp.eval_splits:
                        scores = sets[split].first(k)
                        rows.append({"noise": noise, "variant": name, "form": variant.model.form, "k": k,
                                     "split": split, **cell_metrics(scores, temperature, exp.bootstrap_resamples, seed)})
                        curves[(noise, name, k, split)] = scores
    return rows, curves


def _find(rows: list[dict], **where) -> dict | None:
    return next((r for r in rows if all(r[k] == v for k, v in where.items())), None)


def summarize(rows: list[dict], exp: DictConfig) -> str:
    """The findings the issue asks for, each read off the rows (Markdown)."""
    id_split, shifted = exp.eval_splits[0], exp.eval_splits[-1]
    kmax = max(exp.n_members)
    lines = ["## Findings", ""]
    lines.append(f"Epistemic uncertainty, {id_split} vs {shifted}, K={kmax}: the variance of the member rewards "
                 "(mean over responses) and the mutual information of the preference (mean over pairs):")
    lines.append("")
    table = []
    for r in rows:
        if r["k"] == kmax and r["split"] == id_split:
            other = _find(rows, noise=r["noise"], variant=r["variant"], k=kmax, split=shifted)
            if other:
                table.append({"noise": r["noise"], "variant": r["variant"], f"epistemic_{id_split}": r["epistemic_var"],
                              f"epistemic_{shifted}": other["epistemic_var"],
                              "ratio": other["epistemic_var"] / max(r["epistemic_var"], 1e-12),
                              f"mi_{id_split}": r["mi"], f"mi_{shifted}": other["mi"]})
    lines += [markdown_table(table), ""] if table else ["(no K=max rows)", ""]
    noisy = max(exp.label_noise)
    single = _find(rows, noise=noisy, variant="shared", k=1, split=id_split)
    if single:
        lines.append(f"ECE on {id_split} with {noisy:.0%} label noise, single model (shared, K=1): "
                     f"{single['ece']:.4f} (after temperature scaling {single['ece_calibrated']:.4f}); K={kmax}:")
        lines.append("")
        table = [{"variant": r["variant"], "ece": r["ece"], "ece_calibrated": r["ece_calibrated"],
                  "lower_than_single": r["ece"] < single["ece"]}
                 for r in rows if r["noise"] == noisy and r["k"] == kmax and r["split"] == id_split]
        lines += [markdown_table(table), ""] if table else []
    table = [{"noise": r["noise"], "variant": r["variant"], "split": r["split"], "accuracy": r["accuracy"],
              "auroc_entropy": r["auroc_entropy"], "ci95": f"[{r['auroc_entropy_lo']:.3f}, {r['auroc_entropy_hi']:.3f}]",
              "above_0.5": r["auroc_entropy_lo"] > 0.5, "auroc_mi": r["auroc_mi"],
              "mi_ci95": f"[{r['auroc_mi_lo']:.3f}, {r['auroc_mi_hi']:.3f}]", "auroc_reward_std": r["auroc_reward_std"]}
             for r in rows if r["k"] == kmax]
    lines += [f"AUROC for the ensemble's own mistakes, K={kmax}, with 95% bootstrap intervals over pairs: of the "
              "total predictive entropy of the preference, of its epistemic part (mutual information), and of "
              "the std of r_c - r_r:", "", markdown_table(table)] if table else []
    return "\n".join(lines)


def plot_study(out_dir: Path, curves: dict, exp: DictConfig) -> None:
    """Reliability diagrams and risk-coverage curves per noise rate; epistemic ID vs shifted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kmax, kmin = max(exp.n_members), min(exp.n_members)
    id_split, shifted = exp.eval_splits[0], exp.eval_splits[-1]
    for noise in exp.label_noise:
        tag = f"noise{int(round(noise * 100))}"
        reliability = {f"{name} K={k}": special.expit(s.logits) for (n, name, k, split), s in curves.items()
                       if n == noise and split == id_split and k in (kmin, kmax)}
        plot_reliability(out_dir / f"reliability_{tag}.png", reliability,
                         title=f"Reliability, {id_split}, {noise:.0%} label noise")
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        for (n, name, k, split), s in curves.items():
            if n == noise and split == id_split and k in (kmin, kmax):
                errors = (s.mean_c.mean(1) <= s.mean_r.mean(1)).astype(float)
                coverage, risk = metrics.risk_coverage_curve(s.entropy, errors)
                ax.plot(coverage, risk, label=f"{name} K={k} (AURC {risk.mean():.4f})")
        ax.set(xlabel="coverage (lowest predictive entropy kept)", ylabel="error rate among kept",
               title=f"Risk-coverage, {id_split}, {noise:.0%} label noise", xlim=(0, 1))
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / f"risk_coverage_{tag}.png", dpi=120)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    labels, ids, shifts = [], [], []
    for (n, name, k, split), s in curves.items():
        if k == kmax and split == id_split and (n, name, k, shifted) in curves:
            labels.append(f"{name}\n{n:.0%} noise")
            ids.append(s.epistemic.mean())
            shifts.append(curves[(n, name, k, shifted)].epistemic.mean())
    x = np.arange(len(labels))
    ax.bar(x - 0.2, ids, 0.4, label=id_split)
    ax.bar(x + 0.2, shifts, 0.4, label=shifted)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set(ylabel="mean epistemic variance", yscale="log", title=f"Epistemic uncertainty, K={kmax}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "epistemic.png", dpi=120)
    plt.close(fig)

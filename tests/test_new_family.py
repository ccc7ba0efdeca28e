"""A reward-model family defined here, outside the package, with its YAML in a temporary folder:
nothing else is edited, and it goes through `score`, `compare`, save and `nexus.load`, training with
`RewardTrainer`, and the `compare_rms` study (debug scale) beside a built-in family."""

from __future__ import annotations

import torch
from torch import Tensor, nn

import nexus
from nexus.backbones import Backbone, load_backbone
from nexus.backbone_model import BackboneRewardModel
from nexus.base import RewardOutput
from nexus.tasks.arithmetic import generate
from nexus.evaluation import evaluate_pairwise
from nexus.training import RewardTrainer
from nexus.training.trainer import RewardTrainingArguments
from tests.conftest import compose_config


class LinearProbeRewardModel(BackboneRewardModel):
    """A linear reward on the backbone's pooled features: the smallest trainable family. Batching,
    packing, the pairwise collator, the training loss and the checkpoint layout come from the base."""

    model_type = "linear_probe_test"

    def __init__(self, backbone: Backbone, batch_size: int = 16):
        super().__init__(batch_size=batch_size)
        self.backbone = backbone
        self.head = nn.Linear(backbone.feature_size, 1)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.head(self.backbone(input_ids, attention_mask)).squeeze(-1)

    def _score_batch(self, prompts: list[str], responses: list[str]) -> RewardOutput:
        return RewardOutput(rewards=self(**self.backbone.encode(prompts, responses)).float().cpu())

    def config_dict(self) -> dict:
        return {"backbone": self.backbone.spec(), "batch_size": self.batch_size}


def test_a_family_defined_outside_the_package_works_everywhere(tmp_path):
    torch.manual_seed(0)
    rm = LinearProbeRewardModel(load_backbone("tiny-gpt2")).eval()
    data = generate(64, seed=0)
    pairs = data["pairwise"]
    prompts, chosen, rejected = ([getattr(p, f) for p in pairs[:8]] for f in ("prompt", "chosen", "rejected"))
    out = rm.score(prompts, chosen, batch_size=3, share_prompts=False)
    assert out.rewards.shape == (8,)
    p = rm.compare(prompts, chosen, rejected)
    torch.testing.assert_close(p, torch.sigmoid(out.rewards - rm.score(prompts, rejected).rewards), atol=1e-5, rtol=0)

    loaded = nexus.load(rm.save_pretrained(tmp_path / "probe"))
    assert type(loaded) is LinearProbeRewardModel
    torch.testing.assert_close(loaded.score(prompts, chosen).rewards, out.rewards)

    before = evaluate_pairwise(rm, pairs[:64])["accuracy"]
    args = RewardTrainingArguments(output_dir=str(tmp_path / "train"), max_steps=40, per_device_train_batch_size=16,
                                   learning_rate=3e-3, save_strategy="no", report_to="none", use_cpu=True, seed=0)
    losses = RewardTrainer(model=rm.train(), args=args, train_dataset=pairs[:64]).train()
    assert losses.training_loss < 0.69  # below chance (ln 2): the loss moved
    assert evaluate_pairwise(rm.eval(), pairs[:64])["accuracy"] > before  # and the fit to its pairs with it


def test_compare_rms_runs_a_family_given_by_its_yaml_alone(tmp_path):
    from experiments.compare_rms import run

    family_dir = tmp_path / "families"
    family_dir.mkdir()
    (family_dir / "linear_probe.yaml").write_text(
        f"_target_: {LinearProbeRewardModel.__module__}.LinearProbeRewardModel\nbackbone: ${{backbone}}\nbatch_size: 8\n")
    run_dir = tmp_path / "run"
    cfg = compose_config(run_dir, "run", ["experiment=compare_rms", "+debug=compare_rms",
                                          f"experiment.model_dirs=[{family_dir}]",
                                          "experiment.families=[linear_probe,scalar]", "experiment.loglik=null",
                                          f"experiment.cache_dir={tmp_path / 'generations'}"])
    out = run(cfg, run_dir)
    rows = {r["family"]: r for r in out["rows"]}
    assert sorted(rows) == ["linear_probe", "scalar"]
    assert rows["linear_probe"]["trained_on"] == "pairwise (16)" and 0 <= rows["linear_probe"]["accuracy_level2/unseen"] <= 1
    assert "| linear_probe |" in (run_dir / "results.md").read_text()

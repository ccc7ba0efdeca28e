"""Models by hub id from a Hugging Face cache laid out as `from_pretrained` finds it offline, and
the `dtype` option (bf16 loading, scoring, training and checkpoints on CPU)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import nexus
from nexus.backbones import load_backbone
from nexus.backbones.tiny import build_tiny
from nexus.models.scalar import ScalarRewardModel
from nexus.tasks.arithmetic import generate

COMMIT = "0123456789abcdef0123456789abcdef01234567"
PROMPTS, RESPONSES = ["12 + 7", "3 * 4 - 1"], ["12 + 7 = 19", "3 * 4 = 12\n12 - 1 = 11"]


def save_tiny(directory: Path, name: str = "tiny-llama", lm_head: bool = True) -> Path:
    model, tokenizer = build_tiny(name, seed=3, with_lm_head=lm_head)
    model.save_pretrained(directory)  # safetensors
    tokenizer.save_pretrained(directory)
    return directory


def hub_cache(home: Path, repo_id: str, source: Path, commit: str = COMMIT) -> Path:
    """The layout huggingface_hub writes: models--owner--name/{snapshots/<commit>/files, refs/main}."""
    repo = home / "hub" / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(source, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture
def offline_home(tmp_path, monkeypatch):
    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


def test_a_hub_id_loads_from_the_cache_offline_like_the_local_directory(tmp_path, offline_home):
    source = save_tiny(tmp_path / "src")
    hub_cache(offline_home, "nexus-test/tiny-llama", source)
    local = load_backbone(str(source)).eval()
    by_id = load_backbone("nexus-test/tiny-llama").eval()
    pinned = load_backbone("nexus-test/tiny-llama", revision=COMMIT).eval()
    batch = local.encode(PROMPTS, RESPONSES)
    with torch.no_grad():
        torch.testing.assert_close(by_id(**batch), local(**batch), atol=0, rtol=0)
        torch.testing.assert_close(pinned(**batch), local(**batch), atol=0, rtol=0)
    assert by_id.source == "nexus-test/tiny-llama"
    with pytest.raises(ValueError, match=r"'nexus-test/tiny-llama@v9'.*not in the cache.*HF_HUB_OFFLINE"):
        load_backbone("nexus-test/tiny-llama", revision="v9")
    with pytest.raises(ValueError, match=r"unknown backbone 'nobody/nothing'.*as a hub id.*not in the cache"):
        load_backbone("nobody/nothing")


def test_a_policy_and_an_rm_checkpoint_take_a_hub_id(tmp_path, offline_home):
    from nexus.sampling import HFPolicy

    hub_cache(offline_home, "nexus-test/tiny-llama", save_tiny(tmp_path / "src"))
    policy = HFPolicy("nexus-test/tiny-llama", max_new_tokens=4, dtype="bf16")
    assert policy.model.dtype == torch.bfloat16
    samples = policy.generate(["1 + 1"], n=2, seed=0)
    assert len(samples[0]) == 2
    rm = ScalarRewardModel(load_backbone("nexus-test/tiny-llama"), head_hidden=8, dropout=0.0)
    rm.save_pretrained(tmp_path / "rm")
    torch.testing.assert_close(nexus.load(tmp_path / "rm").score(PROMPTS, RESPONSES).rewards,
                               rm.eval().score(PROMPTS, RESPONSES).rewards)


def test_a_hub_snapshot_without_safetensors_is_refused(tmp_path, offline_home):
    source = save_tiny(tmp_path / "src")
    for weights in source.glob("*.safetensors"):
        weights.unlink()
    (source / "pytorch_model.bin").write_bytes(b"not unpickled")
    hub_cache(offline_home, "nexus-test/pickled", source)
    with pytest.raises(ValueError, match=r"no \*\.safetensors weights; nexus does not load pickled"):
        load_backbone("nexus-test/pickled")


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-bert"])
def test_bf16_scores_close_to_fp32_and_survives_a_checkpoint(tmp_path, name):
    torch.manual_seed(0)
    full = ScalarRewardModel(load_backbone(name), head_hidden=16, dropout=0.0).eval()
    half = ScalarRewardModel(load_backbone(name, dtype="bf16"), head_hidden=16, dropout=0.0).eval()
    half.head.load_state_dict(full.head.state_dict())
    assert half.backbone.dtype == torch.bfloat16 and half.head.net[0].weight.dtype == torch.float32
    ref, got = full.score(PROMPTS, RESPONSES).rewards, half.score(PROMPTS, RESPONSES).rewards
    assert got.dtype == torch.float32 and not torch.equal(got, ref)  # bf16 really ran
    torch.testing.assert_close(got, ref, atol=2e-2, rtol=0)
    half.save_pretrained(tmp_path / "m")
    back = nexus.load(tmp_path / "m")
    assert back.backbone.dtype == torch.bfloat16
    torch.testing.assert_close(back.score(PROMPTS, RESPONSES).rewards, got, atol=0, rtol=0)
    with pytest.raises(ValueError, match=r"dtype='fp8': expected one of"):
        load_backbone(name, dtype="fp8")


def test_bf16_training_moves_the_loss_and_keeps_the_dtype(tmp_path):
    from nexus.training import RewardTrainer, RewardTrainingArguments

    torch.manual_seed(0)
    rm = ScalarRewardModel(load_backbone("tiny-llama", dtype="bf16"), head_hidden=16, dropout=0.0)
    before = [p.detach().clone() for p in rm.backbone.parameters()]
    args = RewardTrainingArguments(output_dir=str(tmp_path), max_steps=8, per_device_train_batch_size=8,
                                   learning_rate=1e-3, report_to="none", save_strategy="no", logging_steps=1,
                                   disable_tqdm=True)
    trainer = RewardTrainer(model=rm, args=args, train_dataset=generate(64, seed=0)["pairwise"])
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert all(torch.isfinite(torch.tensor(losses))) and len(losses) == 8
    assert rm.backbone.dtype == torch.bfloat16
    assert any(not torch.equal(a, b) for a, b in zip(before, rm.backbone.parameters()))

"""Every RM family on CUDA in bf16 against CPU fp32; packed prompts, LoRA and torchrun on NCCL.

python -m benchmarks.gpu_check [--backbone tiny-llama] [--tolerance 0.05]

Without a CUDA device it prints that it skipped and exits 0. With one, per family of
experiments/conf/model/: the same seeded model scored on CPU in fp32 and on CUDA with a bf16
backbone (heads stay fp32), the largest reward difference against `--tolerance` (bf16 keeps 8
bits of mantissa: about 1e-2 relative per layer), then three training steps on CUDA with a finite
loss. Then: packed prompt rows equal unpacked scoring on CUDA, a LoRA backbone trains, and
`torchrun` runs `experiments.train` for two steps with the NCCL backend. Exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

PROMPTS = ["12 + 7", "3 * 4 - 1", "5 - 9", "12 + 7"]
RESPONSES = ["12 + 7 = 19", "3 * 4 = 12\n12 - 1 = 11", "5 - 9 = -4", "12 + 7 = 20"]


def build(family: str, backbone: str, dtype: str | None, seed: int = 0):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from nexus.backbones import load_backbone

    cfg = OmegaConf.create({"seed": seed, "model": OmegaConf.load(Path("experiments/conf/model") / f"{family}.yaml")})
    torch.manual_seed(seed)
    kwargs = {} if family == "rules" else {"backbone": load_backbone(backbone, seed=seed, dtype=dtype,
                                                                       lm_head=family == "generative")}
    return instantiate(cfg.model, **kwargs).eval()


def train_steps(rm, steps: int = 3) -> list[float]:
    from nexus.tasks.arithmetic import generate
    from nexus.training import RewardTrainer, RewardTrainingArguments

    data = generate(32, seed=1)[rm.data_format]
    with tempfile.TemporaryDirectory() as tmp:
        args = RewardTrainingArguments(output_dir=tmp, max_steps=steps, per_device_train_batch_size=4,
                                       learning_rate=1e-4, save_strategy="no", logging_steps=1, disable_tqdm=True)
        trainer = RewardTrainer(model=rm, args=args, train_dataset=data)
        trainer.train()
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="tiny-llama")
    p.add_argument("--tolerance", type=float, default=0.05)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; skipped (nothing was checked)")
        return 0
    failures = []
    families = sorted(f.stem for f in Path("experiments/conf/model").glob("*.yaml"))
    for family in families:
        cpu = build(family, args.backbone, None).score(PROMPTS, RESPONSES).rewards
        gpu_rm = build(family, args.backbone, "bf16").to("cuda")
        gpu = gpu_rm.score(PROMPTS, RESPONSES).rewards
        gap = float((gpu - cpu).abs().max())
        losses = train_steps(gpu_rm) if family != "rules" else []
        ok = gap <= args.tolerance and all(torch.isfinite(torch.tensor(losses)).tolist())
        print(f"{family:16s} max |bf16 cuda - fp32 cpu| {gap:.2e} (tolerance {args.tolerance}); "
              f"training losses {['%.3f' % x for x in losses]}: {'ok' if ok else 'FAILED'}", flush=True)
        failures += [] if ok else [family]
    scalar = build("scalar", args.backbone, "bf16").to("cuda")
    packed = scalar.score(PROMPTS, RESPONSES).rewards
    plain = scalar.score(PROMPTS, RESPONSES, share_prompts=False).rewards
    gap = float((packed - plain).abs().max())
    print(f"packed prompt rows vs unpacked on cuda: max gap {gap:.2e}: {'ok' if gap <= args.tolerance else 'FAILED'}")
    failures += [] if gap <= args.tolerance else ["packed"]
    from nexus.backbones import load_backbone
    from nexus.models.scalar import ScalarRewardModel

    lora = ScalarRewardModel(load_backbone(args.backbone, dtype="bf16", lora={"r": 4, "alpha": 8}), head_hidden=16)
    losses = train_steps(lora.to("cuda"))
    print(f"LoRA on cuda: losses {['%.3f' % x for x in losses]}")
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(torch.cuda.device_count()),
                   "-m", "experiments.train", "backbone=tiny-llama", "trainer.ddp_backend=nccl", "trainer.max_steps=2",
                   "data.n_train=64", "data.n_eval=16", "data.n_calibration=0", f"hydra.run.dir={tmp}",
                   f"save_dir={tmp}/model"]
        done = subprocess.run(command, capture_output=True, text=True)
        print(f"torchrun (NCCL, {torch.cuda.device_count()} GPU): exit {done.returncode}")
        if done.returncode:
            print(done.stderr[-2000:])
            failures.append("torchrun")
    print("gpu_check:", "all passed" if not failures else f"FAILED: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())

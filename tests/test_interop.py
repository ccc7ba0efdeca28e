"""Import of transformers sequence classifiers (the common RM checkpoint format) as nexus RMs."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification

import nexus
from nexus.backbones.tiny import _tiny_config
from nexus.backbones.tokenizer import build_byte_tokenizer
from nexus.models.multi_objective import MultiObjectiveRewardModel
from nexus.models.scalar import ScalarRewardModel
from tests.test_hub import hub_cache

PROMPTS = ["12 + 7", "3 * 4 - 1", "5 - 9"]
RESPONSES = ["12 + 7 = 19", "3 * 4 = 12\n12 - 1 = 11", ""]


def save_classifier(directory, name: str, num_labels: int = 1, pad_is_eos: bool = False, seed: int = 0):
    """A seeded random tiny sequence classifier saved as transformers saves one (safetensors)."""
    tokenizer = build_byte_tokenizer(512)
    if pad_is_eos:
        tokenizer.pad_token = tokenizer.eos_token
    config = _tiny_config(name, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    config.num_labels = num_labels
    config.id2label = {i: f"aspect{i}" for i in range(num_labels)}
    config.label2id = {v: k for k, v in config.id2label.items()}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_config(config)
        for p in model.parameters():  # not the near-zero init: rewards that differ clearly
            p.data.normal_(0.0, 0.2)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return model.eval(), tokenizer


def reference_logits(model, tokenizer, encoder: bool) -> torch.Tensor:
    """The checkpoint's own logits, one unpadded text at a time, on the text nexus documents: the
    pair for encoders; for decoders prompt, blank line, response, then eos unless pad is eos."""
    rows = []
    for prompt, response in zip(PROMPTS, RESPONSES):
        if encoder:
            ids = tokenizer(prompt, response)["input_ids"]
        else:
            ids = tokenizer(f"{prompt}\n\n{response}")["input_ids"]
            if tokenizer.pad_token_id != tokenizer.eos_token_id:
                ids = ids + [tokenizer.eos_token_id]
        with torch.no_grad():
            rows.append(model(input_ids=torch.tensor([ids])).logits[0])
    return torch.stack(rows)


@pytest.mark.parametrize("name, pad_is_eos", [("tiny-gpt2", False), ("tiny-llama", False), ("tiny-llama", True),
                                               ("tiny-bert", False)])
def test_a_sequence_classifier_loads_as_a_scalar_rm_with_its_own_logits(tmp_path, name, pad_is_eos):
    model, tokenizer = save_classifier(tmp_path / "hf", name, pad_is_eos=pad_is_eos)
    rm = nexus.load(tmp_path / "hf")
    assert isinstance(rm, ScalarRewardModel)
    expected = reference_logits(model, tokenizer, encoder=name == "tiny-bert")[:, 0]
    got = rm.score(PROMPTS, RESPONSES).rewards  # batched and padded, unlike the reference
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    gaps = (expected[:, None] - expected[None, :]).abs() + torch.eye(len(expected))
    assert gaps.min() > 1e-3  # distinct rewards: a pooling, order or head mix-up could not hide
    rm.save_pretrained(tmp_path / "nexus")  # and it is an ordinary nexus checkpoint from then on
    torch.testing.assert_close(nexus.load(tmp_path / "nexus").score(PROMPTS, RESPONSES).rewards, got,
                               atol=1e-6, rtol=0)


def test_a_multi_output_classifier_loads_as_a_multi_objective_rm(tmp_path):
    model, tokenizer = save_classifier(tmp_path / "hf", "tiny-llama", num_labels=3)
    rm = nexus.load(tmp_path / "hf")
    assert isinstance(rm, MultiObjectiveRewardModel) and rm.objectives == ["aspect0", "aspect1", "aspect2"]
    out = rm.score(PROMPTS, RESPONSES)
    per_objective = torch.stack([out.extras[name] for name in rm.objectives], dim=-1)
    torch.testing.assert_close(per_objective, reference_logits(model, tokenizer, False), atol=1e-5, rtol=0)


def test_a_classifier_loads_by_hub_id_and_in_bf16(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tokenizer = save_classifier(tmp_path / "hf", "tiny-llama")
    hub_cache(tmp_path / "home", "someone/tiny-rm", tmp_path / "hf")
    expected = reference_logits(model, tokenizer, False)[:, 0]
    torch.testing.assert_close(nexus.load("someone/tiny-rm").score(PROMPTS, RESPONSES).rewards, expected,
                               atol=1e-5, rtol=0)
    half = nexus.load("someone/tiny-rm", dtype="bf16")
    assert half.backbone.dtype == torch.bfloat16
    torch.testing.assert_close(half.score(PROMPTS, RESPONSES).rewards, expected, atol=5e-2, rtol=0)


EXPORT_CHECK = """
import json, sys
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1], trust_remote_code=False).eval()
tok = AutoTokenizer.from_pretrained(sys.argv[1])
pairs, encoder = json.loads(sys.argv[2]), sys.argv[3] == "encoder"
rows = []
for prompt, response in pairs:
    if encoder:  # the model card's pair encoding
        rows.append(tok(prompt, response)["input_ids"])
    else:  # the documented plain format of a decoder without a chat template: prompt, blank line, response, eos
        rows.append(tok(prompt + "\\n\\n" + response)["input_ids"] + [tok.eos_token_id])
with torch.no_grad():
    logits = [model(input_ids=torch.tensor([ids])).logits[0].tolist() for ids in rows]
print(json.dumps({"logits": logits, "nexus_imported": any(m.startswith("nexus") for m in sys.modules)}))
"""


def plain_transformers_logits(folder, encoder: bool = False) -> torch.Tensor:
    """Logits of an exported folder on PROMPTS and RESPONSES, computed by a fresh interpreter that
    imports transformers only and builds the text itself."""
    import json
    import subprocess
    import sys

    pairs = json.dumps(list(zip(PROMPTS, RESPONSES)))
    out = subprocess.run([sys.executable, "-c", EXPORT_CHECK, str(folder), pairs, "encoder" if encoder else "decoder"],
                         capture_output=True,
                         text=True, check=True, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["nexus_imported"] is False
    return torch.tensor(result["logits"])


@pytest.mark.parametrize("name, lora", [("tiny-gpt2", None), ("tiny-llama", None), ("tiny-bert", None),
                                        ("tiny-llama", {"r": 4, "alpha": 8, "target_modules": "all-linear"})])
def test_export_writes_a_plain_sequence_classifier_with_the_nexus_rewards(tmp_path, name, lora):
    from nexus.backbones import load_backbone

    torch.manual_seed(1)
    backbone = load_backbone(name, lora=lora, pooling="pooler" if name == "tiny-bert" else None)
    rm = ScalarRewardModel(backbone, head_hidden=0, dropout=0.0).eval()
    with torch.no_grad():
        rm.head.net.weight.normal_(0.0, 0.2)
        if name == "tiny-bert":
            rm.head.net.bias.fill_(0.25)  # BERT's classifier has a bias: exported exactly
        else:
            rm.head.net.bias.zero_()
        if lora:  # trained adapters, so that merging them changes the weights
            for n, p in rm.backbone.model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0.0, 0.5)
    rewards = rm.score(PROMPTS, RESPONSES).rewards
    rm.export_hf(tmp_path / "export")
    logits = plain_transformers_logits(tmp_path / "export", encoder=name == "tiny-bert")
    torch.testing.assert_close(logits[:, 0], rewards, atol=1e-5, rtol=0)
    # and back: importing the export gives the same RM rewards
    torch.testing.assert_close(nexus.load(tmp_path / "export").score(PROMPTS, RESPONSES).rewards, rewards,
                               atol=1e-5, rtol=0)


def test_export_refuses_what_one_linear_layer_cannot_represent(tmp_path):
    from nexus.backbones import load_backbone
    from nexus.models.ensemble import EnsembleRewardModel

    torch.manual_seed(0)
    with pytest.raises(ValueError, match="MLP head \\(head_hidden=16\\).*head_hidden=0"):
        ScalarRewardModel(load_backbone("tiny-llama"), head_hidden=16).export_hf(tmp_path / "a")
    with pytest.raises(ValueError, match="EnsembleRewardModel cannot be exported"):
        EnsembleRewardModel(load_backbone("tiny-llama"), n_members=2).export_hf(tmp_path / "b")
    with pytest.raises(ValueError, match="lm_logprobs=True"):
        ScalarRewardModel(load_backbone("tiny-llama", lm_logprobs=True), head_hidden=0).export_hf(tmp_path / "c")
    with pytest.raises(ValueError, match="pooling='mean'.*'pooler'"):
        ScalarRewardModel(load_backbone("tiny-bert"), head_hidden=0).export_hf(tmp_path / "d")
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "mine.txt").write_text("not the RM's")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        ScalarRewardModel(load_backbone("tiny-gpt2"), head_hidden=0).export_hf(tmp_path / "kept")
    assert (tmp_path / "kept" / "mine.txt").read_text() == "not the RM's"


def test_a_new_linear_head_starts_at_bias_zero_so_it_exports_exactly():
    from nexus.backbones import load_backbone

    assert ScalarRewardModel(load_backbone("tiny-llama"), head_hidden=0).head.net.bias.abs().max() == 0
    multi = MultiObjectiveRewardModel(load_backbone("tiny-llama"), objectives=["a", "b"], head_hidden=0)
    assert multi.head.net.net.bias.abs().max() == 0


def test_a_head_bias_folds_into_a_layernorm_bias_and_is_recorded_where_it_cannot(tmp_path):
    """GPT-2's final LayerNorm has a bias, so the head bias folds in and the export's logits are the
    rewards; Llama's RMSNorm has none, so the logits are shifted by it, and nexus.load adds it back."""
    from nexus.backbones import load_backbone

    for name, folds in (("tiny-gpt2", True), ("tiny-llama", False)):
        torch.manual_seed(0)
        rm = ScalarRewardModel(load_backbone(name), head_hidden=0, dropout=0.0).eval()
        with torch.no_grad():
            rm.head.net.weight.normal_(0.0, 0.2)
            rm.head.net.bias.fill_(0.5)
        rewards = rm.score(PROMPTS, RESPONSES).rewards
        if folds:
            rm.export_hf(tmp_path / name)
        else:
            with pytest.warns(UserWarning, match=r"no bias.*\[0\.5\].*nexus_reward_bias"):
                rm.export_hf(tmp_path / name)
        logits = plain_transformers_logits(tmp_path / name)[:, 0]
        torch.testing.assert_close(logits if folds else logits + 0.5, rewards, atol=1e-5, rtol=0)
        torch.testing.assert_close(nexus.load(tmp_path / name).score(PROMPTS, RESPONSES).rewards, rewards,
                                   atol=1e-5, rtol=0)

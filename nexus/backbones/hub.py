"""Hub ids resolved the way `transformers` resolves them: the Hugging Face cache (`HF_HUB_CACHE`,
else `$HF_HOME/hub`, else ~/.cache/huggingface/hub), a `revision`, and `HF_HUB_OFFLINE`.

A hub model is fetched as a local snapshot first (its config, tokenizer and *.safetensors files,
never pickled *.bin weights), so it goes through the same checks as a local directory before any
weights are built. Environment variables are read at each call, not at import.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# What a model needs from a repository: configs, tokenizer files, chat templates, safetensors weights.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja"]
# owner/name or name: what a hub id can look like (a path that does not exist is also tried as one).
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}


def hub_cache_dir() -> Path:
    """The hub cache transformers uses: HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "huggingface"
    return Path(home).expanduser() / "hub"


def offline() -> bool:
    """Whether HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set to a true value now."""
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def is_hub_id(name: str) -> bool:
    return bool(HUB_ID.fullmatch(name)) and not name.startswith((".", "/", "~"))


def hub_snapshot(repo_id: str, revision: str | None = None) -> Path:
    """The local snapshot folder of model `repo_id` at `revision` (default "main"), downloaded into
    the hub cache unless offline; offline, the cached snapshot or a ValueError saying how to get it.
    A repository without *.safetensors weights is refused (nexus never unpickles weights)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    where = f"{repo_id}@{revision or 'main'}"
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, cache_dir=hub_cache_dir(),
                                        allow_patterns=ALLOW_PATTERNS, local_files_only=offline()))
    except LocalEntryNotFoundError:
        raise ValueError(f"hub model {where!r} is not in the cache {hub_cache_dir()} and HF_HUB_OFFLINE is set; "
                         "download it once online (or point to a local directory)") from None
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise ValueError(f"hub model {where!r}: {type(err).__name__}: {err}") from None
    except OSError as err:  # no network: the same advice as offline
        raise ValueError(f"hub model {where!r} could not be fetched ({err}); set HF_HUB_OFFLINE=1 to use the "
                         f"cache {hub_cache_dir()}, or give a local directory") from None
    if not (folder / "config.json").is_file():
        raise ValueError(f"hub model {where!r}: its snapshot {folder} has no config.json")
    if not any(folder.glob("*.safetensors")):
        raise ValueError(f"hub model {where!r} has no *.safetensors weights; nexus does not load pickled "
                         "(*.bin) weights: convert them to safetensors first")
    return folder


def local_or_hub(name: str, revision: str | None = None) -> Path | None:
    """A local directory as it is; else the snapshot of the hub id `name` (`hub_snapshot`);
    None when `name` is neither an existing directory nor shaped like a hub id."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    return hub_snapshot(name, revision) if is_hub_id(name) else None


def torch_dtype(dtype: str | None):
    """'fp32' | 'bf16' | 'fp16' (or their long names) -> the torch dtype; None -> None (the model's own)."""
    import torch

    if dtype is None:
        return None
    if isinstance(dtype, torch.dtype):
        return dtype
    if str(dtype) not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: expected one of {sorted(set(DTYPES))} or None")
    return getattr(torch, DTYPES[str(dtype)])


def dtype_name(dtype) -> str | None:
    """A torch dtype's short name for configs ('float32', 'bfloat16', 'float16'); None stays None."""
    return None if dtype is None else str(dtype).removeprefix("torch.")

"""Checkpoint safety: where `RewardModel.save_pretrained` may write, how a save reaches the disk, the
leftovers of killed saves, and checks of a config against its weights before any model is built.

What counts as a nexus checkpoint: a directory with a `config.json` holding a JSON object whose
"model_type" is a registered family (`nexus.models.MODEL_TYPES`) or the type of the model being
saved, and whose top-level entries are all ones a save of that family writes: `config.json`,
`model.safetensors` (files) and the family's `saved_entries` (the folders its `_save_extra` writes,
e.g. `backbone`). Nothing else, no symbolic links.

Saving (`check_save_target`, `staging_dir`, `commit`, `remove_leftovers`):

- a missing path or an empty directory is written; a nexus checkpoint is replaced only with
  `overwrite=True`; anything else (a file, a link, a folder with other content) raises
  FileExistsError and is left as it was;
- the checkpoint is written to a sibling `.{name}.tmp-<hex>` folder, every file and folder in it is
  fsynced, it is renamed into place (an existing checkpoint first moves to `.{name}.old-<hex>`, then
  is deleted) and the parent directory is fsynced;
- afterwards, `.{name}.tmp-<hex>` and `.{name}.old-<hex>` siblings left by killed saves of that name
  are removed, but only those that hold nothing but what a nexus save writes and that no running
  save holds (a save keeps an exclusive `flock` on its temporary folder while it writes).

Loading (`check_weights`, `checked_hf_config`): a model is first built on the `meta` device (no
memory) from the config and compared with the safetensors headers (shapes and names only, no
tensor data is read); disagreements, a model much larger than its weight files, or more than
`max_params()` parameters (env `NEXUS_MAX_PARAMS`) raise ValueError before anything is allocated.
Model types transformers does not know are refused before transformers is asked, so a checkpoint's
own code (`auto_map`) never runs unless the caller passes `trust_remote_code=True` where offered.
"""

from __future__ import annotations

import contextlib
import contextvars
import fnmatch
import json
import math
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from nexus import registry

try:  # POSIX: a running save holds a lock on its temporary folder
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
# Files every nexus checkpoint may hold, beside the family's `saved_entries`.
BASE_ENTRIES = (CONFIG_NAME, WEIGHTS_NAME)
MAX_PARAMS_ENV = "NEXUS_MAX_PARAMS"
DEFAULT_MAX_PARAMS = 20_000_000_000
# A Hugging Face directory's model may exceed its weight files by this much (fresh heads, buffers).
HF_SLACK_FRACTION, HF_SLACK_ELEMENTS = 0.01, 1 << 20
# Without `fcntl`, a leftover folder counts as abandoned once untouched this long.
STALE_AFTER_S = 3600.0
# config.json files larger than this are not read as configs.
MAX_CONFIG_BYTES = 16 << 20
# Config fields that count repeated layers (each layer has at least one tensor in the weights).
LAYER_FIELDS = ("num_hidden_layers", "n_layer", "num_layers", "num_decoder_layers", "num_encoder_layers",
                "n_layers", "encoder_layers", "decoder_layers")

_LEFTOVER = r"(?:tmp|old)-[0-9a-f]+"
_building_skeleton: contextvars.ContextVar[bool] = contextvars.ContextVar("nexus_building_skeleton", default=False)


# ---- what a checkpoint is ------------------------------------------------------------------------

def _read_json(file: Path) -> dict | None:
    """The JSON object in `file`, or None if it is missing, too large, not JSON or not an object."""
    try:
        if not file.is_file() or file.is_symlink() or file.stat().st_size > MAX_CONFIG_BYTES:
            return None
        value = json.loads(file.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def family_entries(model_type, model_cls=None) -> tuple[str, ...] | None:
    """Top-level names (fnmatch patterns) a save of `model_type` writes, or None for a type nexus does
    not know: a registered family's, or `model_cls`'s own when it has that type."""
    if not isinstance(model_type, str):
        return None
    if model_cls is not None and getattr(model_cls, "model_type", None) == model_type:
        return (*BASE_ENTRIES, *model_cls.saved_entries)
    known = registry.known_types()
    if model_type not in known:
        return None
    return (*BASE_ENTRIES, *known[model_type].saved_entries)


def _allowed(entry: Path, patterns: tuple[str, ...]) -> bool:
    if entry.is_symlink():
        return False
    if entry.name in BASE_ENTRIES:
        return entry.is_file()
    return any(fnmatch.fnmatchcase(entry.name, p) for p in patterns)


def not_a_checkpoint(path: Path, model_cls=None) -> str | None:
    """Why the directory `path` is not a nexus checkpoint (see the module docstring), or None if it is."""
    config = _read_json(path / CONFIG_NAME)
    if config is None:
        exists = (path / CONFIG_NAME).exists()
        return f"its {CONFIG_NAME} is not a JSON object" if exists else f"it has no {CONFIG_NAME}"
    patterns = family_entries(config.get("model_type"), model_cls)
    if patterns is None:
        return f"its {CONFIG_NAME} has model_type {config.get('model_type')!r}, not a nexus model type"
    foreign = sorted(e.name for e in path.iterdir() if not _allowed(e, patterns))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        return f"it holds {shown}, which a nexus save does not write"
    return None


def check_save_target(path: Path, model_cls, overwrite: bool) -> None:
    """Raise FileExistsError, touching nothing, unless `save_pretrained` may write `path`: it does
    not exist, is an empty directory, or is a nexus checkpoint and `overwrite` is True."""
    if path.is_symlink():
        raise FileExistsError(f"{path} is a symbolic link; save_pretrained does not replace links: "
                              "save to the directory it points to, or to a new path")
    if not path.exists():
        return
    if not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a directory; save_pretrained does not replace it")
    if not any(path.iterdir()):
        return
    reason = not_a_checkpoint(path, model_cls)
    if reason is not None:
        raise FileExistsError(f"{path} exists and is not a nexus checkpoint: {reason}; save_pretrained "
                              "replaces only a folder a nexus save wrote. Choose another path or empty it")
    if not overwrite:
        model_type = _read_json(path / CONFIG_NAME)["model_type"]
        raise FileExistsError(f"{path} already holds a nexus checkpoint (model_type {model_type!r}); "
                              "pass overwrite=True to replace it")


def check_written(directory: Path, model_cls) -> None:
    """Raise ValueError if a save wrote entries its family does not declare in `saved_entries`
    (such a folder would not be recognised as a checkpoint later, so could never be replaced)."""
    patterns = (*BASE_ENTRIES, *model_cls.saved_entries)
    extra = sorted(e.name for e in directory.iterdir() if not _allowed(e, patterns))
    if extra:
        raise ValueError(f"{model_cls.__name__}._save_extra wrote {', '.join(extra)}, which "
                         f"{model_cls.__name__}.saved_entries does not list; add them there")


# ---- durable writes ------------------------------------------------------------------------------

def _fsync_path(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """fsync a directory, so that the entries created or renamed in it survive a crash (POSIX)."""
    if os.name == "nt":  # pragma: no cover - directories cannot be opened on Windows
        return
    _fsync_path(path)


def fsync_tree(root: Path) -> None:
    """fsync every file under `root`, then every directory, deepest first."""
    for dirpath, _, filenames in os.walk(root, topdown=False):
        for name in filenames:
            file = os.path.join(dirpath, name)
            if not os.path.islink(file):
                _fsync_path(file)
        fsync_dir(Path(dirpath))


def _open_locked(path: Path, block: bool) -> int | None:
    """An fd of directory `path` holding an exclusive flock, or None if another process holds it
    (`block=False`). Raises OSError if the directory cannot be opened or locked."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if block else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def staging_dir(path: Path) -> Iterator[Path]:
    """A new, locked `.{name}.tmp-<hex>` sibling of `path` to write a checkpoint into; removed if the
    block raises. The lock (held until the block ends) tells `remove_leftovers` it is in use."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir()
        except FileExistsError:
            continue
        fd = None
        if fcntl is not None and os.name != "nt":
            try:
                fd = _open_locked(tmp, block=True)
                if os.fstat(fd).st_ino != os.stat(tmp).st_ino:  # removed as a leftover before the lock
                    raise FileNotFoundError(tmp)
            except FileNotFoundError:
                if fd is not None:
                    os.close(fd)
                continue
            except OSError:  # a file system without flock: write unlocked
                fd = None
        break
    else:
        raise FileExistsError(f"could not create a temporary folder beside {path}")
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if fd is not None:
            os.close(fd)


def commit(tmp: Path, path: Path, model_cls, overwrite: bool) -> None:
    """Make the checkpoint written in `tmp` durable and move it to `path` (see the module docstring)."""
    fsync_tree(tmp)
    check_save_target(path, model_cls, overwrite)  # again: the folder may have changed meanwhile
    old = None
    if path.exists():  # an empty folder or a checkpoint to replace: moved aside, deleted after
        old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        if old is not None:  # put the previous checkpoint back
            os.replace(old, path)
        raise
    fsync_dir(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _looks_like_partial_save(folder: Path, model_cls) -> bool:
    """Whether `folder` holds nothing but what a save of `model_cls`, or of the family its
    config.json names, writes (a nested save's own temporary folders included)."""
    patterns = (*BASE_ENTRIES, *model_cls.saved_entries)
    config = _read_json(folder / CONFIG_NAME)
    named = family_entries(config.get("model_type"), model_cls) if config else None
    patterns += named or ()
    for entry in folder.iterdir():
        if _allowed(entry, patterns):
            continue
        nested = re.fullmatch(rf"\.(.+)\.{_LEFTOVER}", entry.name)
        if nested and entry.is_dir() and not entry.is_symlink() and any(
                fnmatch.fnmatchcase(nested.group(1), p) for p in patterns):
            continue
        return False
    return True


def remove_leftovers(path: Path, model_cls) -> list[Path]:
    """Delete the `.{name}.tmp-<hex>` / `.{name}.old-<hex>` siblings of `path` that killed saves left:
    folders (not links) holding only what a nexus save writes, and not locked by a running save
    (without flock: untouched for `STALE_AFTER_S`). Returns what was removed; nothing else is touched."""
    pattern = re.compile(re.escape(f".{path.name}.") + _LEFTOVER)
    removed = []
    for entry in sorted(path.parent.iterdir()):
        if not pattern.fullmatch(entry.name) or entry.is_symlink() or not entry.is_dir():
            continue
        try:
            if not _looks_like_partial_save(entry, model_cls):
                continue
            fd, by_age = None, fcntl is None or os.name == "nt"
            if not by_age:
                try:
                    fd = _open_locked(entry, block=False)
                    if fd is None:  # a save in progress holds it
                        continue
                except OSError:  # a file system without flock
                    by_age = True
            if by_age and time.time() - entry.stat().st_mtime < STALE_AFTER_S:
                continue
            try:
                shutil.rmtree(entry)
                removed.append(entry)
            finally:
                if fd is not None:
                    os.close(fd)
        except OSError:  # vanished or unreadable meanwhile: leave it
            continue
    return removed


# ---- config against weights ----------------------------------------------------------------------

def max_params() -> int:
    """The most parameters a config may imply: env `NEXUS_MAX_PARAMS` (e.g. 7e9), default 2e10."""
    raw = os.environ.get(MAX_PARAMS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PARAMS
    try:
        value = float(raw.replace("_", ""))
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 1):
        raise ValueError(f"{MAX_PARAMS_ENV}={raw!r}: expected a number of parameters >= 1, e.g. 2e10")
    return int(value)


def safetensors_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors file's header (no tensor data is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as err:  # SafetensorError, OSError: the file is not what it claims to be
        raise ValueError(f"{file}: not a readable safetensors file ({err})") from err


def _numel(shape) -> int:
    return math.prod(int(d) for d in shape)


def _layer_counts(config, prefix: str = "") -> Iterator[tuple[str, int]]:
    """(field, value) of every layer-count field in a raw config dict, nested configs included."""
    for key, value in config.items():
        if key in LAYER_FIELDS and isinstance(value, int) and not isinstance(value, bool):
            yield prefix + key, value
        elif isinstance(value, dict):
            yield from _layer_counts(value, f"{prefix}{key}.")


def _check_layer_counts(config_files: list[Path], n_tensors: int, weights: str) -> None:
    """A layer has at least one tensor: a config counting more layers than the weights hold tensors
    is refused before a model with that many layers is built (even on `meta` that takes time)."""
    for file in config_files:
        for field, count in _layer_counts(_read_json(file) or {}):
            if count > n_tensors:
                raise ValueError(f"{file}: {field}={count}, but {weights} holds only {n_tensors} tensors; "
                                 "the config does not match the weights, nothing was built")


def _check_cap(count: int, where, subject: str = "the config implies") -> None:
    cap = max_params()
    if count > cap:
        raise ValueError(f"{where}: {subject} {count:,} parameters, more than the limit of {cap:,} "
                         f"(env {MAX_PARAMS_ENV}); set {MAX_PARAMS_ENV} higher to load it")


def building_skeleton() -> bool:
    """True while `check_weights` builds a model on `meta`: a nested `from_pretrained` (the hybrid's
    inner model) then returns a skeleton too, without reading weights."""
    return _building_skeleton.get()


def _skeleton(build: Callable[[], nn.Module]) -> nn.Module:
    token = _building_skeleton.set(True)
    try:
        with torch.device("meta"):
            return build()
    finally:
        _building_skeleton.reset(token)


def _unique_tensors(module: nn.Module) -> list[tuple[list[str], tuple[int, ...]]]:
    """([names], shape) per distinct tensor of `module.state_dict()` (tied weights share one entry)."""
    groups: dict[int, tuple[list[str], tuple[int, ...]]] = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), ([], tuple(tensor.shape)))[0].append(name)
    return list(groups.values())


def check_weights(build: Callable[[], nn.Module], weights: Path, directory: Path) -> None:
    """Compare the model `build()` makes from a checkpoint's config with the weights file, before any
    real model is built. `build` runs on the `meta` device; the file's header alone is read.

    Raises:
        ValueError: naming the file and each tensor whose shape differs (expected from the config,
            found in the file), is missing from the file or is unexpected in it; a config counting
            more layers than the file has tensors; or weights of more than `max_params()` parameters.
    """
    shapes = safetensors_shapes(weights)
    found_total = sum(map(_numel, shapes.values()))
    # A config that passes the comparison below implies exactly the file's count, so the cap is
    # checked on the file, before anything is built.
    _check_cap(found_total, weights, "the file holds")
    _check_layer_counts(sorted(directory.glob(f"*/{CONFIG_NAME}")), len(shapes), weights.name)
    skeleton = _skeleton(build)
    problems, seen, implied = [], set(), 0
    for names, shape in _unique_tensors(skeleton):
        implied += _numel(shape)
        present = [n for n in names if n in shapes]
        seen.update(present)
        if not present:
            problems.append(f"{names[0]}: the config implies shape {list(shape)}, the file has no such tensor")
        problems += [f"{n}: the config implies shape {list(shape)}, the file has {list(shapes[n])}"
                     for n in present if shapes[n] != shape]
    problems += [f"{n}: in the file with shape {list(shapes[n])}, but the config implies no such tensor"
                 for n in shapes if n not in seen]
    if problems:
        shown = problems[:5] + ([f"... and {len(problems) - 5} more"] if len(problems) > 5 else [])
        raise ValueError(
            f"{directory}: the config does not match the weights in {weights}; nothing was built.\n  "
            + "\n  ".join(shown) + f"\n  in all, the config implies {implied:,} values, the file holds {found_total:,}")


def checked_hf_config(directory: Path, auto_class, trust_remote_code: bool = False):
    """The transformers config of the local model directory `directory`, checked before `auto_class`
    (e.g. AutoModel) builds a model from it and its weights:

    - a model_type transformers does not know is refused unless `trust_remote_code` (transformers
      would otherwise need to run the directory's own code, `auto_map`);
    - the model `auto_class` builds (on `meta`) may not hold more than 1% + 2^20 values beyond the
      directory's *.safetensors files, nor more than `max_params()` parameters.
    Shapes are left to transformers, which compares them on `meta` and raises before allocating.
    """
    config_file = directory / CONFIG_NAME
    config = load_hf_config(directory, trust_remote_code)
    files = sorted(directory.glob("*.safetensors"))
    found_total, n_tensors = 0, 0
    for file in files:
        shapes = safetensors_shapes(file)
        found_total += sum(map(_numel, shapes.values()))
        n_tensors += len(shapes)
    if files:
        _check_layer_counts([config_file], n_tensors, f"the *.safetensors files of {directory}")
    skeleton = _skeleton(lambda: auto_class.from_config(config, trust_remote_code=trust_remote_code))
    implied = sum(_numel(shape) for _, shape in _unique_tensors(skeleton))
    if files and implied > found_total * (1 + HF_SLACK_FRACTION) + HF_SLACK_ELEMENTS:
        raise ValueError(f"{config_file}: the config implies {implied:,} values ({auto_class.__name__}), but the "
                         f"*.safetensors files of {directory} hold {found_total:,}; the config does not match "
                         "the weights, nothing was built")
    _check_cap(implied, directory)
    return config


def load_hf_config(directory: Path, trust_remote_code: bool = False):
    """The transformers config of a local model directory (a saved backbone, a Hugging Face folder).

    A model_type transformers does not know is refused before transformers is asked, unless
    `trust_remote_code`: loading it would run the directory's own code (`auto_map`). transformers
    is always called with an explicit `trust_remote_code`, so it never prompts on stdin.
    """
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    config_file = directory / CONFIG_NAME
    raw = _read_json(config_file)
    if raw is None:
        raise ValueError(f"{config_file} is missing or not a JSON object")
    model_type = raw.get("model_type")
    if not trust_remote_code and model_type is not None and model_type not in CONFIG_MAPPING:
        code = f" and asks to run its own code (auto_map: {raw['auto_map']})" if raw.get("auto_map") else ""
        raise ValueError(f"{config_file}: model_type {model_type!r} is not an architecture transformers knows{code}; "
                         "nexus does not run code from model directories or checkpoints (trust_remote_code=False)")
    return AutoConfig.from_pretrained(directory, local_files_only=True, trust_remote_code=trust_remote_code)

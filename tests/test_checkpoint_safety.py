"""Checkpoints that lose nothing and never run code: where save_pretrained may write, durable
renames, leftovers of killed saves, no checkpoint code, and configs checked against weights."""

from __future__ import annotations

import fcntl
import json
import os
import resource
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import nexus
from nexus.backbones import load_backbone
from nexus.models.rules import RulesRewardModel
from nexus.models.scalar import ScalarRewardModel

PROMPTS, RESPONSES = ["1 + 2", "3 + 4 - 5", "9 - 1"], ["1 + 2 = 3", "3 + 4 = 7\n7 - 5 = 2", ""]


@pytest.fixture
def rm():
    torch.manual_seed(0)
    return ScalarRewardModel(load_backbone("tiny-gpt2"), head_hidden=8, dropout=0.0).eval()


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` (and `root` itself if a file) -> its bytes (None for folders)."""
    if root.is_file():
        return {".": root.read_bytes()}
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


# ---- where save_pretrained may write --------------------------------------------------------------

def _user_notes(path: Path) -> None:
    path.mkdir()
    (path / "notes.txt").write_text("three weeks of notes")
    (path / "data").mkdir()
    (path / "data" / "results.csv").write_text("a,b\n1,2\n")


def _hf_model_dir(path: Path) -> None:
    bb = load_backbone("tiny-gpt2")
    bb.model.save_pretrained(path)
    (path / "README.md").write_text("my fine-tuned GPT-2")


def _checkpoint_plus_notes(path: Path) -> None:
    ScalarRewardModel(load_backbone("tiny-gpt2"), head_hidden=8).save_pretrained(path)
    (path / "notes.txt").write_text("my notes, kept beside the model")


def _a_file(path: Path) -> None:
    path.write_text("not a folder")


@pytest.mark.parametrize("make, reason", [
    (_user_notes, "it has no config.json"),
    (_hf_model_dir, "its config.json has model_type 'gpt2', not a nexus model type"),
    (_checkpoint_plus_notes, "it holds notes.txt, which a nexus save does not write"),
    (_a_file, "exists and is not a directory"),
])
@pytest.mark.parametrize("overwrite", [False, True])
def test_save_refuses_a_path_it_did_not_write_and_touches_nothing(tmp_path, rm, make, reason, overwrite):
    target = tmp_path / "work"
    make(target)
    before, around = snapshot(target), siblings(target)
    with pytest.raises(FileExistsError, match=f"{target}.*{reason}"):
        rm.save_pretrained(target, overwrite=overwrite)
    assert snapshot(target) == before
    assert siblings(target) == around  # no temporary folder left either


def test_save_refuses_a_symbolic_link(tmp_path, rm):
    real = tmp_path / "real"
    rm.save_pretrained(real)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(FileExistsError, match="is a symbolic link"):
        rm.save_pretrained(tmp_path / "link", overwrite=True)
    assert (tmp_path / "link").is_symlink() and (real / "model.safetensors").is_file()


def test_overwrite_is_needed_to_replace_a_checkpoint(tmp_path, rm):
    path = rm.save_pretrained(tmp_path / "ckpt")
    before = snapshot(path)
    reference = rm.score(PROMPTS, RESPONSES).rewards
    with torch.no_grad():
        for param in rm.head.parameters():
            param.add_(0.5)
    changed = rm.score(PROMPTS, RESPONSES).rewards
    assert not torch.allclose(changed, reference)
    with pytest.raises(FileExistsError, match=r"already holds a nexus checkpoint \(model_type 'scalar'\); "
                                              r"pass overwrite=True to replace it"):
        rm.save_pretrained(path)
    assert snapshot(path) == before
    torch.testing.assert_close(nexus.load(path).score(PROMPTS, RESPONSES).rewards, reference, atol=1e-5, rtol=0)

    assert rm.save_pretrained(path, overwrite=True) == path
    torch.testing.assert_close(nexus.load(path).score(PROMPTS, RESPONSES).rewards, changed, atol=1e-5, rtol=0)
    assert siblings(path) == []  # the old checkpoint and the temporary folder are gone


def test_overwrite_replaces_another_family_and_an_empty_folder_is_used(tmp_path, rm):
    path = RulesRewardModel(["repetition"]).save_pretrained(tmp_path / "ckpt")
    rm.save_pretrained(path, overwrite=True)
    assert isinstance(nexus.load(path), ScalarRewardModel)
    (tmp_path / "empty").mkdir()
    rm.save_pretrained(tmp_path / "empty")
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == ["backbone", "config.json", "model.safetensors"]


def test_a_family_must_declare_what_it_writes(tmp_path, rm):
    class Chatty(ScalarRewardModel):
        model_type = "chatty"

        def _save_extra(self, directory):
            super()._save_extra(directory)
            (directory / "debug.log").write_text("x")

    chatty = Chatty(rm.backbone, head_hidden=8)
    with pytest.raises(ValueError, match=r"Chatty\._save_extra wrote debug\.log, which Chatty\.saved_entries "
                                         r"does not list"):
        chatty.save_pretrained(tmp_path / "c")
    assert list(tmp_path.iterdir()) == []


# ---- leftovers of killed saves --------------------------------------------------------------------

def test_leftovers_of_killed_saves_are_removed_and_nothing_else(tmp_path, rm):
    full = rm.save_pretrained(tmp_path / "source")
    partial = tmp_path / ".ckpt.tmp-abc"  # killed while writing: config.json and part of backbone/
    partial.mkdir()
    shutil.copy(full / "config.json", partial / "config.json")
    (partial / "backbone").mkdir()
    (partial / "backbone" / "config.json").write_text("{")
    empty = tmp_path / ".ckpt.tmp-0f"  # killed right after creating it
    empty.mkdir()
    moved = tmp_path / ".ckpt.old-1234abcd"  # killed between moving the old checkpoint aside and deleting it
    shutil.copytree(full, moved)
    # Not ours: a name that is not <hex>, user content, another checkpoint's leftover, a file, a running save.
    notes = tmp_path / ".ckpt.tmp-notes"
    notes.mkdir()
    (notes / "config.json").write_text('{"model_type": "scalar"}')
    foreign = tmp_path / ".ckpt.tmp-def"
    foreign.mkdir()
    (foreign / "config.json").write_text('{"model_type": "scalar"}')
    (foreign / "notes.txt").write_text("mine")
    other = tmp_path / ".other.tmp-abc"
    shutil.copytree(partial, other)
    (tmp_path / ".ckpt.tmp-aaa").write_text("a file")
    running = tmp_path / ".ckpt.tmp-beef"
    shutil.copytree(partial, running)
    fd = os.open(running, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # what a save in progress holds on its temporary folder
    kept = {p: snapshot(p) for p in (notes, foreign, other, tmp_path / ".ckpt.tmp-aaa", running)}
    try:
        rm.save_pretrained(tmp_path / "ckpt")
    finally:
        os.close(fd)
    assert not partial.exists() and not empty.exists() and not moved.exists()
    for path, content in kept.items():
        assert snapshot(path) == content, path
    assert nexus.load(tmp_path / "ckpt").model_type == "scalar"


def test_every_file_and_folder_is_fsynced_then_the_parent(tmp_path, rm, monkeypatch):
    real_fsync, synced = os.fsync, []

    def counting_fsync(fd):
        st = os.fstat(fd)
        synced.append((st.st_dev, st.st_ino))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    path = rm.save_pretrained(tmp_path / "parent" / "ckpt")
    inode = lambda p: (p.stat().st_dev, p.stat().st_ino)  # noqa: E731  (a rename keeps the inode)
    written = [path, *path.rglob("*")]
    assert {inode(p) for p in written} <= set(synced), "a file or folder of the checkpoint was not fsynced"
    parent = inode(path.parent)
    assert parent in synced and synced.index(inode(path)) < len(synced) - 1 - synced[::-1].index(parent)


# ---- no code from a checkpoint --------------------------------------------------------------------

REMOTE_CODE = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import nexus
    from nexus.backbones import load_backbone
    from nexus.models.scalar import ScalarRewardModel

    root = Path(sys.argv[1])
    marker = root / "MARKER"
    evil = (f"open({str(marker)!r}, 'w').write('ran')\\n"
            "from transformers import GPT2Config, GPT2Model\\n"
            "class EvilConfig(GPT2Config):\\n    model_type = 'evil'\\n"
            "class EvilModel(GPT2Model):\\n    config_class = EvilConfig\\n")

    def plant(directory, model_type):
        (directory / "evil.py").write_text(evil)
        config = json.loads((directory / "config.json").read_text())
        config.update(model_type=model_type, auto_map={"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"})
        (directory / "config.json").write_text(json.dumps(config))

    rm = ScalarRewardModel(load_backbone("tiny-gpt2"), head_hidden=8)
    for name in ("unknown", "known"):
        rm.save_pretrained(root / name)  # a nexus checkpoint and a Hugging Face model directory
        rm.backbone.model.save_pretrained(root / f"{name}-hf")
        rm.backbone.tokenizer.save_pretrained(root / f"{name}-hf")
    for directory in (root / "unknown" / "backbone", root / "unknown-hf"):
        plant(directory, "evil")
    for directory in (root / "known" / "backbone", root / "known-hf"):
        plant(directory, "gpt2")
    for load in (lambda: nexus.load(root / "unknown"), lambda: load_backbone(str(root / "unknown-hf"))):
        try:
            load()
            print("LOADED")
        except ValueError as err:
            print("ERROR", err)
    nexus.load(root / "known")  # a known type: its own classes, auto_map ignored
    load_backbone(str(root / "known-hf"))
    print("MARKER", marker.exists())
""")


def test_checkpoint_code_never_runs(tmp_path):
    result = subprocess.run([sys.executable, "-c", REMOTE_CODE, str(tmp_path)], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")})
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith(("ERROR", "LOADED", "MARKER"))]
    message = ("model_type 'evil' is not an architecture transformers knows and asks to run its own code "
               "(auto_map: {'AutoConfig': 'evil.EvilConfig', 'AutoModel': 'evil.EvilModel'}); nexus does not run "
               "code from model directories or checkpoints (trust_remote_code=False)")
    assert lines == [f"ERROR {tmp_path / 'unknown' / 'backbone' / 'config.json'}: {message}",
                     f"ERROR {tmp_path / 'unknown-hf' / 'config.json'}: {message}", "MARKER False"]
    assert not (tmp_path / "MARKER").exists()


# ---- the config against the weights ---------------------------------------------------------------

def _edit_json(file: Path, **changes) -> None:
    file.write_text(json.dumps({**json.loads(file.read_text()), **changes}))


def _quick_refusal(load, match: str):
    """`load` raises ValueError matching `match` within seconds, without the process growing by a GB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.perf_counter()
    with pytest.raises(ValueError, match=match) as info:
        load()
    assert time.perf_counter() - start < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 1 << 20
    return str(info.value)


@pytest.mark.parametrize("changes, match", [
    ({"n_embd": 16384}, r"backbone\.model\.wte\.weight: the config implies shape \[259, 16384\], "
                        r"the file has \[259, 64\]"),
    ({"model_type": "llama"}, r"backbone\.model\.embed_tokens\.weight: the config implies shape \[259, 4096\], "
                              r"the file has no such tensor"),
    ({"n_layer": 10**6}, r"n_layer=1000000, but model\.safetensors holds only \d+ tensors"),
])
def test_backbone_config_that_disagrees_with_the_weights_is_refused(tmp_path, rm, changes, match):
    path = rm.save_pretrained(tmp_path / "ckpt")
    _edit_json(path / "backbone" / "config.json", **changes)
    assert (path / "backbone" / "config.json").stat().st_size < 2048
    message = _quick_refusal(lambda: nexus.load(path), match)
    if "n_layer" not in changes:
        assert f"the config does not match the weights in {path / 'model.safetensors'}; nothing was built" in message
        assert "in all, the config implies" in message


def test_rm_config_that_disagrees_with_the_weights_is_refused(tmp_path, rm):
    path = rm.save_pretrained(tmp_path / "ckpt")
    _edit_json(path / "config.json", head_hidden=4096)
    message = _quick_refusal(lambda: nexus.load(path),
                             r"head\..*: the config implies shape \[4096, 64\], the file has \[8, 64\]")
    assert f"the config does not match the weights in {path / 'model.safetensors'}; nothing was built" in message


def test_hf_directory_whose_config_disagrees_with_its_weights_is_refused(tmp_path, monkeypatch):
    load_backbone("tiny-gpt2").model.save_pretrained(tmp_path)
    load_backbone("tiny-gpt2").tokenizer.save_pretrained(tmp_path)
    monkeypatch.setenv("NEXUS_MAX_PARAMS", "1e4")
    with pytest.raises(ValueError, match=r"the config implies 1\d\d,\d{3} parameters, more than the limit of 10,000"):
        load_backbone(str(tmp_path))
    monkeypatch.delenv("NEXUS_MAX_PARAMS")
    load_backbone(str(tmp_path))
    _edit_json(tmp_path / "config.json", model_type="llama")
    _quick_refusal(lambda: load_backbone(str(tmp_path)),
                   r"the config implies 6,\d{3},\d{3},\d{3} values \(AutoModel\), but the \*\.safetensors files of "
                   r".* hold 149,\d{3}; the config does not match the weights")


def test_parameter_cap_and_unreadable_weights(tmp_path, rm, monkeypatch):
    path = rm.save_pretrained(tmp_path / "ckpt")
    monkeypatch.setenv("NEXUS_MAX_PARAMS", "1e4")
    with pytest.raises(ValueError, match=r"model\.safetensors: the file holds 1\d\d,\d{3} parameters, more than the "
                                         r"limit of 10,000 \(env NEXUS_MAX_PARAMS\); set NEXUS_MAX_PARAMS higher"):
        nexus.load(path)
    monkeypatch.setenv("NEXUS_MAX_PARAMS", "lots")
    with pytest.raises(ValueError, match=r"NEXUS_MAX_PARAMS='lots': expected a number of parameters >= 1"):
        nexus.load(path)
    monkeypatch.delenv("NEXUS_MAX_PARAMS")
    nexus.load(path)
    (path / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match="model.safetensors: not a readable safetensors file"):
        nexus.load(path)

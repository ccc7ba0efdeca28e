"""Bad inputs and what they now get: prints the error of each, and the time and memory that refusing
a checkpoint whose config disagrees with its weights costs (no model is built).

python -m benchmarks.bad_inputs
"""

from __future__ import annotations

import json
import resource
import tempfile
import time
import warnings
from pathlib import Path

import nexus
from nexus.backbones import load_backbone
from nexus.data.formats import read_jsonl
from nexus.models.scalar import ScalarRewardModel


def show(what: str, fn) -> None:
    try:
        fn()
        print(f"{what}: no error")
    except Exception as err:  # noqa: BLE001 - printing whatever each input gets is the point
        print(f"{what}: {type(err).__name__}: {str(err).splitlines()[0]}")


def main() -> None:
    warnings.simplefilter("ignore")
    tmp = Path(tempfile.mkdtemp(prefix="nexus-bad-"))
    rm = ScalarRewardModel(load_backbone("tiny-gpt2"))
    show("max_length=-1", lambda: load_backbone("tiny-gpt2", max_length=-1))
    show("batch_size=0", lambda: rm.score(["p"], ["r"], batch_size=0))
    show("batch_size=-1", lambda: rm.score(["p"], ["r"], batch_size=-1))
    show("max_tokens=0", lambda: rm.score(["p"], ["r"], max_tokens=0))
    show("lone surrogate given to score", lambda: rm.score(["p", "q"], ["ok", "ab\ud800"]))
    (tmp / "pairs.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n'
                                     '{"prompt": "p", "chosen": "x\\ud800", "rejected": "b"}\n')
    show("lone surrogate in JSONL", lambda: read_jsonl(tmp / "pairs.jsonl", "pairwise"))
    (tmp / "deep.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n' + "[" * 100_000 + "\n")
    show("100k-deep JSON", lambda: read_jsonl(tmp / "deep.jsonl", "pairwise"))
    show("calibrate on one pair", lambda: rm.calibrate(["p"], ["a"], ["b"]))
    show("calibrate on 30 identical pairs", lambda: rm.calibrate(["p"] * 30, ["a"] * 30, ["b"] * 30))
    (tmp / "mine").mkdir()
    (tmp / "mine" / "notes.txt").write_text("my notes")
    show("save_pretrained onto a folder of one's own files", lambda: rm.save_pretrained(tmp / "mine"))
    print("notes.txt still there:", (tmp / "mine" / "notes.txt").read_text() == "my notes")
    for field, value in (("n_embd", 16384), ("model_type", "llama")):
        path = ScalarRewardModel(load_backbone("tiny-gpt2")).save_pretrained(tmp / field)
        config = json.loads((path / "backbone" / "config.json").read_text())
        config[field] = value
        (path / "backbone" / "config.json").write_text(json.dumps(config))
        before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
        show(f"checkpoint with backbone {field}={value}", lambda: nexus.load(path))
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(f"  refused in {time.perf_counter() - start:.2f} s, peak RSS +{grown:.0f} MB")


if __name__ == "__main__":
    main()

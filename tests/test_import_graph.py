"""tools/import_graph.py on a small package written here: the arrows, cycles and deferred imports."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

from import_graph import report  # noqa: E402


def write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cycles_count_imports_inside_functions_and_name_the_ones_that_dodge_a_cycle(tmp_path):
    write(tmp_path, "pkg/__init__.py", "")
    write(tmp_path, "pkg/a.py", "from pkg import b\n")                      # a -> b
    write(tmp_path, "pkg/b.py", "def f():\n    from . import c\n")         # b -> c, deferred
    write(tmp_path, "pkg/c.py", "import pkg.a\nimport json\n")              # c -> a closes a-b-c
    write(tmp_path, "pkg/sub/__init__.py", "from .d import X\n")            # sub -> sub.d
    write(tmp_path, "pkg/sub/d.py", "X = 1\ndef g():\n    from pkg.sub import X\n")  # sub.d -> sub
    write(tmp_path, "pkg/e.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    write(tmp_path, "pkg/f.py", "import pkg.e\n")  # e's import never runs: no e -> a arrow, no cycle
    out = report(tmp_path, ("pkg",))
    assert out["modules"] == 8 and out["arrows"] == 6
    assert out["cycles"] == [["pkg.a", "pkg.b", "pkg.c"], ["pkg.sub", "pkg.sub.d"]]
    assert out["largest_cycle"] == 3
    assert out["imports_in_functions"] == 2
    assert out["imports_in_functions_closing_a_cycle"] == ["pkg.b:2 -> pkg.c", "pkg.sub.d:3 -> pkg.sub"]
    write(tmp_path, "pkg/c.py", "import json\n")  # the loop opened: no cycle, nothing dodges one
    out = report(tmp_path, ("pkg",))
    assert out["cycles"] == [["pkg.sub", "pkg.sub.d"]] and out["imports_in_functions_closing_a_cycle"] == ["pkg.sub.d:3 -> pkg.sub"]

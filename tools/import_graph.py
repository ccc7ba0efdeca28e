"""The module import graph of `nexus` (and `experiments`): `python tools/import_graph.py [--json]`.

Reads every module's source with `ast` (nothing is imported or run) and draws an arrow A -> B for
each `import B` / `from B import x` in A that names a module of the package, at module level or
inside a function body. `from pkg import name` points at `pkg.name` when that is a module, else at
`pkg`. Imports under `if TYPE_CHECKING:` never run and draw no arrow. It prints:

- the number of modules and arrows (module level / inside functions);
- every import cycle (strongly connected component of more than one module), largest first, and
  the size of the largest;
- the imports inside function bodies, per module, and which of them close a cycle (the arrow is
  part of a cycle only through module-level imports the other way), the ones that exist to dodge
  a cycle rather than to defer a heavy optional dependency.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("nexus", "experiments")


def module_files(root: Path = ROOT, packages=PACKAGES) -> dict[str, Path]:
    """{dotted module name: source file} for every .py file of `packages` under `root`."""
    out = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The most specific module of the package that `name` (dotted) names or lies inside."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _inside_function(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return True
    return False


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether `node` sits under `if TYPE_CHECKING:`, an import that never runs."""
    while node in parents:
        child, node = node, parents[node]
        if isinstance(node, ast.If) and child in node.body:
            test = node.test
            if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                    isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
                return True
    return False


def import_edges(modules: dict[str, Path]) -> list[dict]:
    """Every import arrow between modules of the package: {source, target, line, in_function}."""
    edges = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            if targets and _type_checking_only(node, parents):
                continue
            for target in targets:
                resolved = _resolve(target, modules)
                if resolved and resolved != name:
                    edges.append({"source": name, "target": resolved, "line": node.lineno,
                                  "in_function": _inside_function(node, parents)})
    return edges


def cycles(nodes, arrows: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), largest first."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(arrows.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return sorted(out, key=lambda c: (-len(c), c))


def _reaches(start: str, goal: str, arrows: dict[str, set[str]]) -> bool:
    seen, todo = {start}, [start]
    while todo:
        v = todo.pop()
        if v == goal:
            return True
        for w in arrows.get(v, ()):
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return False


def report(root: Path = ROOT, packages=PACKAGES) -> dict:
    """The graph's summary: modules, arrows, cycles (all imports) and the in-function imports."""
    modules = module_files(root, packages)
    edges = import_edges(modules)
    every, top = defaultdict(set), defaultdict(set)
    for e in edges:
        every[e["source"]].add(e["target"])
        if not e["in_function"]:
            top[e["source"]].add(e["target"])
    found = cycles(modules, every)
    deferred = [e for e in edges if e["in_function"]]
    dodging = [e for e in deferred if _reaches(e["target"], e["source"], top)]
    return {
        "modules": len(modules),
        "arrows": len({(e["source"], e["target"]) for e in edges}),
        "arrows_module_level": len({(e["source"], e["target"]) for e in edges if not e["in_function"]}),
        "imports_in_functions": len(deferred),
        "imports_in_functions_closing_a_cycle": [f"{e['source']}:{e['line']} -> {e['target']}" for e in dodging],
        "largest_cycle": len(found[0]) if found else 0,
        "cycles": found,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    args = parser.parse_args(argv)
    out = report()
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"modules {out['modules']}, arrows {out['arrows']} ({out['arrows_module_level']} at module level), "
          f"imports inside functions {out['imports_in_functions']}")
    print(f"largest cycle: {out['largest_cycle']} modules; cycles: {len(out['cycles'])}")
    for cycle in out["cycles"]:
        print(f"  ({len(cycle)}) " + ", ".join(cycle))
    closing = out["imports_in_functions_closing_a_cycle"]
    print(f"imports inside functions that close a cycle through module-level imports: {len(closing)}")
    for line in closing:
        print(f"  {line}")


if __name__ == "__main__":
    main()

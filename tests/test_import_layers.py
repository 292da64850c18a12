"""Imports go one way (docs/design.md, "Layers"): every import of the project's own modules, function-local ones
included, read with `ast` and mapped to its layer. A module may import its own package and lower layers (and another
package of its own layer, as long as no cycle results); the leaderboard only reads files and the method registry's
plain table, and reaches no module that imports a model or adapter library; only tests import the build scripts; no
two packages, and no two modules, import each other."""

from __future__ import annotations

import ast
from pathlib import Path

from .conftest import REPO

# Bottom to top, as docs/design.md's "Layers" lists them. A unit is a package (its modules included) or one module.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("utilities", ("vlm_peft_bench", "vlm_peft_bench.errors", "vlm_peft_bench.paths", "vlm_peft_bench.atomic",
                   "vlm_peft_bench.quiet", "vlm_peft_bench.provenance")),
    ("scoring", ("vlm_peft_bench.scoring",)),
    ("model", ("vlm_peft_bench.nanollava",)),
    ("adapters", ("vlm_peft_bench.adapters",)),
    ("methods", ("vlm_peft_bench.methods",)),
    ("runner", ("vlm_peft_bench.runner", "vlm_peft_bench.shared_context", "vlm_peft_bench.shared_prefix")),
    ("lmms-eval glue, training and steering", ("vlm_peft_bench.lmms", "vlm_peft_bench.train", "vlm_peft_bench.steering",
                                               "vlm_peft_bench.arithmetic", "tasks")),
    ("measurements", ("vlm_peft_bench.measure",)),
    ("leaderboard", ("vlm_peft_bench.leaderboard",)),
    ("cli", ("vlm_peft_bench.cli",)),
    ("outside the package", ("vlm_peft_bench_build", "benchmarks", "tests")),
)
SCANNED = ("vlm_peft_bench", "vlm_peft_bench_build", "benchmarks", "tasks")  # tests may import anything
ROOT_PACKAGE = "vlm_peft_bench"  # as a unit, only its __init__: its subpackages must each be placed in LAYERS
ONLY_FROM_TESTS = ("vlm_peft_bench_build", "benchmarks", "tests")  # nothing else imports these
LEADERBOARD = "vlm_peft_bench.leaderboard"
LEADERBOARD_READS = ("utilities", "scoring", "leaderboard")  # layers it may import, plus these modules:
LEADERBOARD_MODULES = ("vlm_peft_bench.methods.table",)
# Libraries that load or run a model or an adapter: the leaderboard must not reach them, even through others.
MODEL_LIBRARIES = {"torch", "torchvision", "transformers", "peft", "pyreft", "pyvene", "safetensors", "accelerate",
                   "lmms_eval", "huggingface_hub"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_imports(root: Path) -> tuple[dict[str, Path], list[tuple[str, int, str]]]:
    """({module: file}, [(importing module, line, imported name)]) for every .py file under the scanned folders;
    `from a import b` names `a.b` when that is a module, else `a`; relative imports are resolved."""
    files = {module_name(p, root): p for top in SCANNED for p in sorted((root / top).rglob("*.py"))}
    edges = []
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                edges += [(module, node.lineno, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                for alias in node.names:
                    edges.append((module, node.lineno, f"{base}.{alias.name}" if f"{base}.{alias.name}" in files
                                  else base))
    return files, list(dict.fromkeys(edges))  # `from a import x, y` is one edge to `a`


def unit_of(module: str, layers=LAYERS) -> tuple[int, str] | None:
    """(layer index, unit) of a project module, or None for a module of no listed unit."""
    best = None
    for index, (_, units) in enumerate(layers):
        for unit in units:
            inside = module == unit or (unit != ROOT_PACKAGE and module.startswith(unit + "."))
            if inside and (best is None or len(unit) > len(best[1])):
                best = (index, unit)
    return best


def _is_ours(name: str, layers=LAYERS) -> bool:
    tops = {unit.split(".")[0] for _, units in layers for unit in units}
    return name.split(".")[0] in tops


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def check_imports(root: Path, layers=LAYERS) -> list[str]:
    """Every broken rule, one line each, naming file:line."""
    files, edges = read_imports(root)
    where = {m: p.relative_to(root).as_posix() for m, p in files.items()}
    names = [layer for layer, _ in layers]
    problems = []
    for module in files:
        if unit_of(module, layers) is None:
            problems.append(f"{where[module]}: module {module} is in no layer: place its package in LAYERS "
                            "(tests/test_import_layers.py) and docs/design.md's layer list")
    ours = [(m, line, target) for m, line, target in edges if _is_ours(target, layers)]
    for module, line, target in ours:
        source, dest = unit_of(module, layers), unit_of(target, layers)
        if source is None:
            continue
        at = f"{where[module]}:{line}: {module} imports {target}"
        if dest is None:
            problems.append(f"{at}, which is in no layer")
            continue
        if dest[1] == source[1]:
            continue
        if dest[1] in ONLY_FROM_TESTS:
            problems.append(f"{at}: only tests import {dest[1]} (it is not part of the installed package)")
        elif dest[0] > source[0]:
            problems.append(f"{at}: upward ({names[source[0]]} -> {names[dest[0]]})")
        elif source[1] == LEADERBOARD and names[dest[0]] not in LEADERBOARD_READS and target not in LEADERBOARD_MODULES:
            problems.append(f"{at}: the leaderboard only reads files and the registry's plain table "
                            f"({', '.join(LEADERBOARD_MODULES)}), never code that loads a model or an adapter")
    problems += _leaderboard_reach(files, edges, where, layers)
    problems += _cycle_problems(ours, where, layers)
    return problems


def _leaderboard_reach(files, edges, where, layers) -> list[str]:
    """The leaderboard's modules, and everything they import (parent packages' __init__ included), transitively:
    none may import a model or adapter library."""
    graph: dict[str, list[tuple[int, str]]] = {}
    heavy: dict[str, tuple[int, str]] = {}
    for module, line, target in edges:
        top = target.split(".")[0]
        if top in MODEL_LIBRARIES:
            heavy.setdefault(module, (line, top))
        elif _is_ours(target, layers):
            parts = target.split(".")
            for n in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                if ".".join(parts[:n]) in files:
                    graph.setdefault(module, []).append((line, ".".join(parts[:n])))
    starts = sorted(m for m in files if (unit_of(m, layers) or (0, ""))[1] == LEADERBOARD)
    path, todo, problems = {m: [m] for m in starts}, list(starts), []
    while todo:  # breadth first: each module once, by its shortest chain from the leaderboard
        module = todo.pop(0)
        if module in heavy:
            line, library = heavy[module]
            problems.append(f"{where[module]}:{line}: imports {library}, and the leaderboard reaches it "
                            f"({' -> '.join(path[module])}): the leaderboard must not load a model or an adapter")
            continue
        for _, nxt in graph.get(module, ()):
            if nxt not in path:
                path[nxt] = path[module] + [nxt]
                todo.append(nxt)
    return problems


def _cycle_problems(ours, where, layers) -> list[str]:
    problems = []
    for level, key in (("packages", lambda m: (unit_of(m, layers) or (0, m))[1]), ("modules", lambda m: m)):
        graph: dict[str, set[str]] = {}
        sites: dict[tuple[str, str], str] = {}
        for module, line, target in ours:
            a, b = key(module), key(target)
            if a != b:
                graph.setdefault(a, set()).add(b)
                sites.setdefault((a, b), f"{where[module]}:{line}")
        for component in _cycles(graph):
            inside = sorted(f"{site} ({a} -> {b})" for (a, b), site in sites.items()
                            if a in component and b in component)
            problems.append(f"import cycle between {level} {', '.join(component)}: " + "; ".join(inside))
    return problems


def test_the_project_imports_in_one_direction():
    problems = check_imports(REPO)
    assert not problems, "imports against the layers (docs/design.md, Layers):\n" + "\n".join(problems)


def test_every_package_of_the_project_is_placed_in_a_layer():
    packages = {module_name(p.parent / "__init__.py", REPO) for p in (REPO / "vlm_peft_bench").rglob("__init__.py")}
    assert all(unit_of(p) is not None for p in packages)
    assert unit_of("vlm_peft_bench.something_new") is None  # a new package must be placed, not swallowed


# --- the checker itself, on planted violations -------------------------------------------------------------------


def plant(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        for parent in path.relative_to(root).parents[:-1]:  # every folder a package
            (root / parent / "__init__.py").touch()
    return root


CLEAN = {
    "vlm_peft_bench/__init__.py": '__version__ = "0"\n',
    "vlm_peft_bench/errors.py": "class VlmPeftBenchError(Exception):\n    pass\n",
    "vlm_peft_bench/scoring/cvbench.py": "from vlm_peft_bench.errors import VlmPeftBenchError\n",
    "vlm_peft_bench/nanollava/loading.py": "import torch\n\nfrom vlm_peft_bench.scoring import cvbench\n",
    "vlm_peft_bench/methods/table.py": "import json\n\nfrom ..errors import VlmPeftBenchError\n",
    "vlm_peft_bench/methods/attach.py": "import torch\n\nfrom vlm_peft_bench.nanollava.loading import torch\n",
    "vlm_peft_bench/runner.py": "import torch\n",
    "vlm_peft_bench/lmms/vlreft.py": "from vlm_peft_bench.methods import attach\nfrom vlm_peft_bench import runner\n",
    "vlm_peft_bench/train/trainer.py": "from vlm_peft_bench.runner import Runner\n",
    "vlm_peft_bench/leaderboard/build.py": "from vlm_peft_bench.methods.table import json\nfrom . import tables\n",
    "vlm_peft_bench/leaderboard/tables.py": "def f():\n    from vlm_peft_bench.scoring.cvbench import x\n",
    "vlm_peft_bench/cli.py": "def f():\n    from vlm_peft_bench.leaderboard.build import build\n",
    "vlm_peft_bench_build/tiny.py": "from vlm_peft_bench.nanollava.loading import torch\n",
}


def test_checker_passes_a_tree_that_keeps_the_rules(tmp_path):
    assert check_imports(plant(tmp_path, CLEAN)) == []


def test_checker_names_each_planted_violation_by_file_and_line(tmp_path):
    planted = {
        **CLEAN,
        # upward, hidden in a function (line 4)
        "vlm_peft_bench/scoring/vqa.py": "import json\n\n\ndef f():\n    from vlm_peft_bench.runner import Runner\n",
        # the leaderboard importing what loads an adapter (line 2), and the plain table turned heavy (line 1)
        "vlm_peft_bench/leaderboard/identify.py": "from . import tables\nfrom vlm_peft_bench.methods.attach import a\n",
        "vlm_peft_bench/methods/table.py": "import peft\n",
        # a runtime module importing the build scripts
        "vlm_peft_bench/nanollava/config.py": "\nimport vlm_peft_bench_build.tiny\n",
        # two packages of one layer importing each other
        "vlm_peft_bench/lmms/answer_log.py": "from vlm_peft_bench.train import trainer\n",
        "vlm_peft_bench/train/data.py": "x = 1\nfrom vlm_peft_bench.lmms.answer_log import y\n",
        # a package placed in no layer
        "vlm_peft_bench/extras/thing.py": "from vlm_peft_bench.errors import VlmPeftBenchError\n",
    }
    problems = "\n".join(check_imports(plant(tmp_path, planted)))
    assert "vlm_peft_bench/scoring/vqa.py:5: vlm_peft_bench.scoring.vqa imports vlm_peft_bench.runner: upward " \
           "(scoring -> runner)" in problems
    assert "vlm_peft_bench/leaderboard/identify.py:2: vlm_peft_bench.leaderboard.identify imports " \
           "vlm_peft_bench.methods.attach: the leaderboard only reads files" in problems
    assert "vlm_peft_bench/methods/table.py:1: imports peft, and the leaderboard reaches it (" \
           "vlm_peft_bench.leaderboard.build -> vlm_peft_bench.methods.table)" in problems
    assert "vlm_peft_bench/nanollava/config.py:2: vlm_peft_bench.nanollava.config imports vlm_peft_bench_build.tiny: " \
           "only tests import vlm_peft_bench_build" in problems
    assert "import cycle between packages vlm_peft_bench.lmms, vlm_peft_bench.train: " \
           "vlm_peft_bench/lmms/answer_log.py:1 (vlm_peft_bench.lmms -> vlm_peft_bench.train); " \
           "vlm_peft_bench/train/data.py:2 (vlm_peft_bench.train -> vlm_peft_bench.lmms)" in problems
    assert "vlm_peft_bench/extras/thing.py: module vlm_peft_bench.extras.thing is in no layer" in problems
    assert "vlm_peft_bench/methods/attach.py:1: imports torch, and the leaderboard reaches it (" \
           "vlm_peft_bench.leaderboard.identify -> vlm_peft_bench.methods.attach)" in problems
    assert len(problems.splitlines()) == 9  # those, the cycle once more between modules, and extras/__init__


def test_checker_finds_a_cycle_between_modules_of_one_package(tmp_path):
    planted = {**CLEAN, "vlm_peft_bench/scoring/captions.py": "from vlm_peft_bench.scoring import spice\n",
               "vlm_peft_bench/scoring/spice.py": "def f():\n    from vlm_peft_bench.scoring.captions import g\n"}
    assert check_imports(plant(tmp_path, planted)) == [
        "import cycle between modules vlm_peft_bench.scoring.captions, vlm_peft_bench.scoring.spice: "
        "vlm_peft_bench/scoring/captions.py:1 (vlm_peft_bench.scoring.captions -> vlm_peft_bench.scoring.spice); "
        "vlm_peft_bench/scoring/spice.py:2 (vlm_peft_bench.scoring.spice -> vlm_peft_bench.scoring.captions)"]

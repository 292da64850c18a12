"""Declared and used stay the same: every dependency pyproject.toml declares (and every extra's) is imported
somewhere in the project's code, tests, benchmarks or build scripts, unless
`[tool.vlm-peft-bench.unimported-dependencies]` names it with the reason it is there anyway."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
import tomllib

from .conftest import REPO

SCANNED = ("vlm_peft_bench", "vlm_peft_bench_build", "tasks", "tests", "benchmarks")
DYNAMIC_IMPORTS = ("importorskip", "import_module")


def distribution(requirement: str) -> str:
    """`lmms-eval[video-legacy]==0.7.3` -> `lmms-eval`, normalised (PEP 503)."""
    name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> dict[str, str]:
    """{distribution: where it is declared} for the dependencies and every extra."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    found = {distribution(r): "dependencies" for r in project["dependencies"]}
    for extra, requirements in project.get("optional-dependencies", {}).items():
        for r in requirements:
            found.setdefault(distribution(r), f"the {extra} extra")
    return found


def exceptions() -> dict[str, str]:
    table = tomllib.loads((REPO / "pyproject.toml").read_text()).get("tool", {}).get("vlm-peft-bench", {})
    return {distribution(k): v for k, v in table.get("unimported-dependencies", {}).items()}


def imported_modules() -> set[str]:
    """The top-level name of every module imported anywhere in the scanned folders (function-local imports too)."""
    names = set()
    for top in SCANNED:
        for path in (REPO / top).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module.split(".")[0])
                elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) in DYNAMIC_IMPORTS
                      and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                    names.add(node.args[0].value.split(".")[0])  # pytest.importorskip("x"), importlib.import_module
    return names


def modules_of(dist: str, installed: dict[str, list[str]]) -> set[str]:
    """The top-level modules a distribution provides: from its installed files, else its own name."""
    found = {module for module, dists in installed.items() if dist in {distribution(d) for d in dists}}
    return found or {dist.replace("-", "_")}


def test_every_declared_dependency_is_imported_or_excused():
    installed = metadata.packages_distributions()
    used = imported_modules()
    excused = exceptions()
    unused = {dist: where for dist, where in declared().items()
              if dist not in excused and not modules_of(dist, installed) & used}
    assert not unused, ("declared but never imported (remove them, or say why in pyproject.toml's "
                        f"[tool.vlm-peft-bench.unimported-dependencies]): {unused}")


def test_every_excuse_names_a_declared_dependency_with_a_reason():
    excused, known = exceptions(), declared()
    assert excused, "the table is read from pyproject.toml"
    assert set(excused) <= set(known), f"excused but not declared: {set(excused) - set(known)}"
    assert all(isinstance(reason, str) and len(reason) > 20 for reason in excused.values())


def test_every_imported_third_party_module_is_declared():
    """The other direction: every module imported comes from the standard library or a declared distribution."""
    installed = metadata.packages_distributions()
    ours = {"vlm_peft_bench", "vlm_peft_bench_build", "tasks", "tests", "benchmarks", "utils"}
    allowed = set(declared())
    missing = {}
    for module in sorted(imported_modules() - ours - set(sys.stdlib_module_names)):
        dists = {distribution(d) for d in installed.get(module, [])} or {module.replace("_", "-")}
        if not dists & allowed:
            missing[module] = sorted(dists)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


"""The core names no built-in component (issue 16, point 4; DESIGN.md §4).

Built-in architectures, weightings and domains are plugins exactly like third-party ones, so
the core package ``mtl_platform/`` must neither import them nor name them: a built-in's name
in the core is a choice the user cannot change (or a special case another plugin cannot
join). These tests read the core's source.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mtl_platform

CORE = Path(mtl_platform.__file__).parent
PLUGIN_PACKAGES = ("plugins", "mtl_platform_plugins")


def sources() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def relative(path: Path) -> str:
    return path.relative_to(CORE.parent).as_posix()


def imported_modules(tree: ast.Module, path: Path) -> list[str]:
    """Every module an ``import`` or ``from ... import`` names, relative imports made absolute."""
    package = relative(path).split("/")[:-1]  # a module's package; an __init__.py's own package
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            out.append(module)
            out += [f"{module}.{a.name}" for a in node.names]
    return out


def plugin_imports(tree: ast.Module, path: Path) -> list[str]:
    return [m for m in imported_modules(tree, path) if m.split(".")[0] in PLUGIN_PACKAGES]


def test_the_core_imports_no_plugin_package():
    found = [f"{relative(p)}: {m}" for p in sources() for m in plugin_imports(parsed(p), p)]
    assert not found, "the core imports the built-in plugins: " + "; ".join(found)


def builtin_names() -> dict[str, str]:
    """``{name: kind}`` of every built-in component, over every kind (sub-kinds included)."""
    from mtl_platform import registry

    reg, _ = registry.load(builtin_only=True)
    return {name: kind for kind in reg.kinds() for name in reg.names(kind)}


def test_the_builtin_registry_is_not_empty():
    """Guards the next test against passing vacuously (no built-ins found, nothing to match)."""
    names = builtin_names()
    assert {"hps", "ew", "fixed"} <= set(names)


def test_no_string_literal_of_the_core_is_a_builtin_component_name():
    """Exact equality with every ``str`` constant (docstrings and prose never equal a bare
    name). No allow-list: a literal that coincides with a component's name is renamed."""
    names = builtin_names()
    found = [f"{relative(path)}:{node.lineno}: {node.value!r} ({names[node.value]})"
             for path in sources() for node in ast.walk(parsed(path))
             if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names]
    assert not found, "the core names built-in components:\n" + "\n".join(found)


def test_contracts_import_nothing_from_stages():
    found = [f"{relative(p)}: {m}" for p in sorted((CORE / "contracts").rglob("*.py"))
             for m in imported_modules(parsed(p), p) if m.startswith("mtl_platform.stages")]
    assert not found, "contracts/ imports stages/ (an import cycle of the core): " + "; ".join(found)


@pytest.mark.parametrize("source, expected", [
    ("from ..stages import TrainStage", "mtl_platform.stages"),
    ("from .. import stages", "mtl_platform.stages"),
    ("from ..stages.train import TrainStage", "mtl_platform.stages.train"),
    ("import mtl_platform.stages.train", "mtl_platform.stages.train"),
])
def test_relative_imports_resolve_against_the_package(source, expected):
    """The import reader resolves ``..`` from contracts/ to ``mtl_platform`` (else the
    contracts test is blind)."""
    path = CORE / "contracts" / "architecture.py"
    modules = imported_modules(ast.parse(source), path)
    assert any(m == expected or m.startswith(expected + ".") for m in modules), modules


@pytest.mark.parametrize("source, found", [
    ("from mtl_platform_plugins.architectures.hps import HPS", True),
    ("import plugins.weightings.ew", True),
    ("def f():\n    import mtl_platform_plugins\n", True),  # a lazy import counts too
    ("from .registry import load", False),
    ("name = 'mtl_platform_plugins'", False),  # a string is not an import
])
def test_the_import_reader_sees_plugin_imports_anywhere(source, found):
    assert bool(plugin_imports(ast.parse(source), CORE / "session.py")) is found

"""tests/ mirrors the code: tests of ``mtl_platform/X/`` live in ``tests/core/X/``, tests of
``plugins/X/`` in ``tests/plugins/X/``, checks of the repository as a whole in ``tests/project/``;
shared fixtures in ``tests/conftest.py``, shared helpers in ``tests/helpers/``."""
from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
MIRRORS = {"core": ROOT / "mtl_platform", "plugins": ROOT / "plugins"}


def python_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def misplaced(path: Path) -> str | None:
    """Why ``path`` (a .py file under tests/) is outside the layout, or None."""
    rel = path.relative_to(TESTS)
    if rel.as_posix() == "conftest.py" or (rel.parts[0] == "helpers" and len(rel.parts) == 2):
        return None
    if not rel.name.startswith("test_"):
        return "not a test module: helpers go in tests/helpers/, fixtures in tests/conftest.py"
    if rel.parts[0] == "project":
        return None if len(rel.parts) == 2 else "tests/project/ has no sub-folders"
    if rel.parts[0] in MIRRORS:
        mirrored = MIRRORS[rel.parts[0]].joinpath(*rel.parts[1:-1])
        return None if mirrored.is_dir() else f"no folder {mirrored.relative_to(ROOT)} to mirror"
    return "outside tests/core/, tests/plugins/ and tests/project/"


def test_every_test_module_sits_in_the_mirrored_layout():
    wrong = {p.relative_to(ROOT).as_posix(): why for p in python_files() if (why := misplaced(p))}
    assert not wrong, wrong


def test_the_layout_check_rejects_a_module_outside_it():
    assert misplaced(TESTS / "test_x.py") == "outside tests/core/, tests/plugins/ and tests/project/"
    assert misplaced(TESTS / "core" / "no_such_module" / "test_x.py") == "no folder mtl_platform/no_such_module to mirror"
    assert misplaced(TESTS / "plugins" / "weightings" / "helper.py").startswith("not a test module")
    assert misplaced(TESTS / "plugins" / "weightings" / "test_gh.py") is None


def test_test_module_names_are_unique():
    """pytest imports test modules by their base name (no __init__.py), so two may not share one."""
    names: dict[str, list[str]] = {}
    for path in python_files():
        names.setdefault(path.name, []).append(path.relative_to(ROOT).as_posix())
    assert not {n: ps for n, ps in names.items() if len(ps) > 1 and n != "conftest.py"}


def test_every_import_of_a_test_module_or_helper_is_on_the_configured_path():
    """``from test_uda import ...`` works in any run (one file alone too) only when the folder of
    ``test_uda.py`` is in pyproject's [tool.pytest.ini_options] pythonpath."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    on_path = {(ROOT / p).resolve() for p in config.get("pythonpath", [])}
    where = {p.stem: p.parent.resolve() for p in python_files()}
    missing = []
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                if name in where and where[name] not in on_path:
                    missing.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not missing, missing

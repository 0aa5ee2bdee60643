"""tests/ mirrors the code: tests of ``mtl_platform/X/`` live in ``tests/core/X/``, tests of
``plugins/X/`` in ``tests/plugins/X/``, checks of the repository as a whole in ``tests/project/``;
shared fixtures in ``tests/conftest.py``, shared helpers in ``tests/helpers/``. Under
``tests/plugins/weightings/`` and ``tests/plugins/architectures/`` each module is named after
the component it tests; the few that test several at once are listed in ``CROSS_CUTTING``."""
from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
MIRRORS = {"core": ROOT / "mtl_platform", "plugins": ROOT / "plugins"}


# The modules of tests/plugins/<kind>s/ that test several components at once. Every other module
# there is named after the one component it tests: test_<name>.py or test_<name>_<aspect>.py for a
# registered <name>, or test_<module>.py for a private plugins/<kind>s/_<module>.py (_solvers.py).
CROSS_CUTTING = {
    "weightings": {
        "test_weightings.py",                 # every loss weighting
        "test_weighting_properties.py",       # every registered weighting
        "test_weighting_references.py",       # the solver weightings against exact references
        "test_weighting_numerics.py",         # numerical regressions across weightings
        "test_weighting_family_seeds.py",     # GH, GH++, PCGrad, Equilibrium, CAGrad
        "test_weighting_family_solvers.py",   # MGDA, Nash-MTL, UPGrad, IMTL-G, Aligned-MTL
        "test_weighting_family_staples.py",   # RLW, GradNorm, GradVac, GradDrop, FAMO, DB-MTL
        "test_weighting_absent_tasks.py",     # every registered weighting with a task absent (partial labels)
        "test_weighting_symmetries.py",       # every registered weighting: task order, one task
        "test_weighting_summaries.py",        # every registered weighting's summary names its paper
        "test_weighting_torchjd.py",          # the TorchJD-backed ones against TorchJD (skipped without it)
    },
    "architectures": {
        "test_architectures.py",                         # every registered architecture
        "test_architecture_family_cross_stitch_mtan.py",  # cross-stitch and MTAN
        "test_architecture_family_moe.py",               # MMoE, CGC, PLE, DSelect-k
        "test_dsmtl_guarantees.py",                      # DSMTL-IL's and DSMTL-JL's theorems
    },
}


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


def named_after_nothing(path: Path, components: set[str]) -> str | None:
    """Why ``path``, a test module of tests/plugins/weightings/ or tests/plugins/architectures/,
    is named after no component it may test (``components``: the registered names of its kind), or None."""
    folder = path.parent.name
    subject = path.stem.removeprefix("test_")
    if path.name in CROSS_CUTTING[folder] or (ROOT / "plugins" / folder / f"_{subject}.py").is_file():
        return None
    if any(subject == name or subject.startswith(f"{name}_") for name in components):
        return None
    return (f"named after no registered {folder[:-1]}: one component's tests go in test_<name>.py, "
            f"tests of several in a module listed in CROSS_CUTTING")


def component_modules() -> list[tuple[Path, set[str]]]:
    from mtl_platform import registry

    reg, _ = registry.load(builtin_only=True)
    return [(path, set(reg.names(folder[:-1]))) for folder in CROSS_CUTTING
            for path in sorted((TESTS / "plugins" / folder).glob("test_*.py"))]


def test_every_component_test_module_is_named_after_its_component():
    wrong = {p.relative_to(ROOT).as_posix(): why for p, names in component_modules()
             if (why := named_after_nothing(p, names))}
    assert not wrong, wrong


def test_the_naming_check_rejects_a_module_of_several_components():
    weightings = TESTS / "plugins" / "weightings"
    names = {"gh", "gh_plus_plus", "pcgrad"}
    assert named_after_nothing(weightings / "test_gh.py", names) is None
    assert named_after_nothing(weightings / "test_gh_bounds.py", names) is None
    assert named_after_nothing(weightings / "test_solvers.py", names) is None       # plugins/weightings/_solvers.py
    assert named_after_nothing(weightings / "test_weighting_properties.py", names) is None
    assert named_after_nothing(weightings / "test_weightings_seeds.py", names).startswith("named after no registered weighting")
    assert named_after_nothing(weightings / "test_pcgrad2.py", names) is not None
    assert named_after_nothing(TESTS / "plugins" / "architectures" / "test_architectures_moe.py", {"mmoe"}) is not None


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

"""The wheel of mtl-platform holds every module (DESIGN.md §5).

``plugins/`` is installed as ``mtl_platform_plugins`` through a setuptools ``package-dir``
mapping, which needs the package list spelled out; an editable install hides an omission,
so this builds the real wheel and looks inside.
"""
from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Left out of the build copy: VCS data, build outputs and run artefacts (as in .gitignore).
IGNORE = shutil.ignore_patterns(".git", "__pycache__", "*.pyc", "*.egg-info", "build", "dist", "runs",
                                "wheels", ".venv", ".pytest_cache", ".benchmarks")


def sources(package_dir: str) -> list[Path]:
    return sorted(p.relative_to(ROOT / package_dir) for p in (ROOT / package_dir).rglob("*.py")
                  if "__pycache__" not in p.parts)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    tmp = tmp_path_factory.mktemp("wheel")
    # Build from a clean copy: setuptools reuses build/lib, where a stale copy of a module
    # would hide a package missing from the list (and the repo stays free of build output).
    source = tmp / "src"
    shutil.copytree(ROOT, source, ignore=IGNORE)
    out = tmp / "dist"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--no-index", "--disable-pip-version-check", "--quiet", "-w", str(out), str(source)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = out.glob("mtl_platform-*.whl")
    with zipfile.ZipFile(path) as zf:
        yield zf


def dist_info_file(wheel: zipfile.ZipFile, name: str) -> str:
    (path,) = [n for n in wheel.namelist() if n.endswith(f".dist-info/{name}")]
    return wheel.read(path).decode()


def test_every_plugin_module_is_in_the_wheel_under_mtl_platform_plugins(wheel):
    names = set(wheel.namelist())
    expected = [f"mtl_platform_plugins/{p.as_posix()}" for p in sources("plugins")]
    assert expected, "no plugins/**/*.py found"
    missing = [n for n in expected if n not in names]
    assert not missing, f"plugin modules missing from the wheel (add their packages to pyproject.toml): {missing}"


def test_every_engine_module_is_in_the_wheel(wheel):
    names = set(wheel.namelist())
    expected = [f"mtl_platform/{p.as_posix()}" for p in sources("mtl_platform")]
    missing = [n for n in expected if n not in names]
    assert not missing, f"mtl_platform modules missing from the wheel: {missing}"


def test_no_bare_plugins_package_is_installed(wheel):
    assert not [n for n in wheel.namelist() if n.split("/")[0] == "plugins"]
    tops = {n.split("/")[0] for n in wheel.namelist() if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"mtl_platform", "mtl_platform_plugins"}


def test_entry_points_register_the_builtins_and_the_mtl_script(wheel):
    eps = configparser.ConfigParser()
    eps.optionxform = str  # keep names as written
    eps.read_string(dist_info_file(wheel, "entry_points.txt"))
    assert dict(eps["mtl_platform"]) == {
        "mtl_platform.architectures": "mtl_platform_plugins.architectures",
        "mtl_platform.weightings": "mtl_platform_plugins.weightings",
        "mtl_platform.domains": "mtl_platform_plugins.domains",
        "mtl_platform.closures": "mtl_platform_plugins.closures",
        "mtl_platform.loggers": "mtl_platform_plugins.loggers",
    }
    assert dict(eps["console_scripts"]) == {"mtl": "mtl_platform.cli:main"}
    names = set(wheel.namelist())
    for module in eps["mtl_platform"].values():
        assert f"{module.replace('.', '/')}/__init__.py" in names

"""The plugin registry: built-ins through entry points, duplicates, did-you-mean, disabling.

Every registry here is the built-ins' alone (``builtin_only=True``), so these hold whatever
third-party plugins are installed; ``test_registries_of_tests_are_hermetic`` proves it.
"""
import types

import pytest

from mtl_platform import registry
from mtl_platform.contracts import Weighting
from mtl_platform.errors import UserError
from mtl_platform.hookspecs import hookimpl


def make_plugin(name, *classes, kind="weighting"):
    mod = types.ModuleType(name)

    @hookimpl
    def mtl_register(registry):
        for cls in classes:
            registry.add(kind, cls)

    mod.mtl_register = mtl_register
    return mod


class Other(Weighting):
    """Another equal weighting."""

    name = "ew"

    def weights(self, losses, **computed):
        return self.equal(losses)


def declaring(name, *defaults, classes=(), kind="architecture"):
    """An in-process plugin that adds ``classes`` and declares ``defaults`` ((key, name) pairs)."""
    mod = types.ModuleType(name)

    @hookimpl
    def mtl_register(registry):
        for cls in classes:
            registry.add(kind, cls)
        for key, component in defaults:
            registry.set_default(key, component)

    mod.mtl_register = mtl_register
    return mod


def test_defaults_are_declared_by_the_builtin_plugins_not_the_core():
    from mtl_platform.config import DEFAULTED_KEYS, resolve

    reg, _ = registry.load(builtin_only=True)
    declared = reg.defaults()
    assert set(declared) == set(DEFAULTED_KEYS)
    assert {key: name for key, (name, _) in declared.items()} == {
        "architecture": "hps", "weighting": "ew", "baselines.stl_architecture": "hps",
        "baselines.stl_weighting": "ew"}
    assert {key: plugin for key, (_, plugin) in declared.items()} == {
        "architecture": "mtl_platform.architectures", "baselines.stl_architecture": "mtl_platform.architectures",
        "weighting": "mtl_platform.weightings", "baselines.stl_weighting": "mtl_platform.weightings"}
    cfg = resolve({"domain": "multi_mnist"}, reg)
    assert cfg["architecture"] == {"name": "hps"} and cfg["weighting"] == {"name": "ew"}


def test_conflicting_defaults_name_both_plugins_and_equal_ones_agree():
    with pytest.raises(UserError, match=r"^conflicting defaults for weighting: plugin ") as err:
        registry.load(builtin_only=True, extra_plugins=[declaring("third_party", ("weighting", "uw"))])
    assert "plugin 'mtl_platform.weightings' declares 'ew'" in str(err.value)
    assert "plugin 'third_party' declares 'uw'" in str(err.value)
    reg, _ = registry.load(builtin_only=True, extra_plugins=[declaring("third_party", ("weighting", "ew"))])
    assert reg.default("weighting") == "ew"


def test_a_default_is_a_name_so_a_replacement_under_that_name_serves():
    from mtl_platform.config import resolve
    from mtl_platform_plugins.architectures.hps import HPS

    class OwnHPS(HPS):
        """Someone else's hps."""

    reg, _ = registry.load(builtin_only=True, disable=["architecture:hps@mtl_platform.architectures"],
                           extra_plugins=[declaring("third_party", classes=[OwnHPS])])
    assert reg.get("architecture", reg.default("architecture")).cls is OwnHPS
    assert resolve({"domain": "multi_mnist"}, reg)["architecture"] == {"name": "hps"}


def test_a_default_for_a_key_that_takes_none_is_an_error_naming_the_plugin():
    from mtl_platform.config import resolve

    reg, _ = registry.load(builtin_only=True, extra_plugins=[declaring("third_party", ("optimizer", "sgd"))])
    with pytest.raises(UserError, match=r"^plugin 'third_party' declares a default for 'optimizer', which takes none; "
                                        r"keys that do: architecture, weighting, baselines\.stl_architecture"):
        resolve({"domain": "multi_mnist"}, reg)


def test_builtins_come_through_the_entry_point_group():
    reg, pm = registry.load(builtin_only=True)
    assert {"ew", "uw", "dwa"} <= set(reg.names("weighting"))
    assert reg.get("weighting", "uw").plugin == "mtl_platform.weightings"
    assert reg.get("architecture", "hps").plugin == "mtl_platform.architectures"
    assert reg.get("domain", "multi_mnist").plugin == "mtl_platform.domains"
    assert "mtl_platform.weightings" in {name for name, _ in pm.list_name_plugin()}


def test_duplicate_names_name_both_plugins():
    with pytest.raises(UserError) as err:
        registry.load(builtin_only=True, extra_plugins=[make_plugin("third_party", Other)])
    msg = str(err.value)
    assert "duplicate weighting 'ew'" in msg
    assert "mtl_platform.weightings" in msg and "third_party" in msg


def test_a_disabled_component_can_be_replaced_by_a_third_party():
    reg, _ = registry.load(builtin_only=True, disable=["weighting:ew@mtl_platform.weightings"],
                           extra_plugins=[make_plugin("third_party", Other)])
    assert reg.get("weighting", "ew").cls is Other
    assert reg.get("weighting", "ew").plugin == "third_party"


def test_disabling_a_whole_plugin_removes_its_components():
    full, _ = registry.load(builtin_only=True)
    reg, pm = registry.load(builtin_only=True, disable=["mtl_platform.weightings"])
    assert reg.names("weighting") == []
    assert reg.names("architecture") == full.names("architecture") and "hps" in reg.names("architecture")
    assert pm.is_blocked("mtl_platform.weightings")


def test_unknown_name_suggests_the_closest():
    reg, _ = registry.load(builtin_only=True)
    with pytest.raises(UserError, match=r"unknown weighting 'dwaa' \(did you mean 'dwa'\?\)"):
        reg.get("weighting", "dwaa")


def test_disabling_kind_name_blocks_it_from_every_plugin():
    reg, _ = registry.load(builtin_only=True, disable=["weighting:ew"],
                           extra_plugins=[make_plugin("third_party", Other)])
    assert "ew" not in reg.names("weighting")


def test_disabled_component_lookup_says_it_is_disabled():
    reg, _ = registry.load(builtin_only=True, disable=["weighting:dwa"])
    with pytest.raises(UserError, match="disabled"):
        reg.get("weighting", "dwa")


@pytest.mark.parametrize("name, match", [("weighting:dwx", "did you mean 'weighting:dwa'"),
                                         ("mtl_platform.weightingz", "no plugin named")])
def test_disabling_something_unknown_is_an_error(name, match):
    with pytest.raises(UserError, match=match):
        registry.load(builtin_only=True, disable=[name])


def test_a_plugin_module_that_fails_to_import_is_named(tmp_path, monkeypatch):
    pkg = tmp_path / "brokenpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "bad.py").write_text("import does_not_exist_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugin = types.ModuleType("broken_plugin")

    @hookimpl
    def mtl_register(registry):
        registry_module = __import__("mtl_platform.registry", fromlist=["register_package"])
        registry_module.register_package(registry, "brokenpkg", [str(pkg)])

    plugin.mtl_register = mtl_register
    with pytest.raises(UserError, match=r"plugin module brokenpkg\.bad failed to import: ModuleNotFoundError"):
        registry.load(builtin_only=True, extra_plugins=[plugin])


def test_components_declare_their_parameters():
    reg, _ = registry.load(builtin_only=True)
    params = {p.name: p for p in reg.get("weighting", "dwa").params}
    assert params["T"].type is float and params["T"].default == 2.0 and params["T"].help
    domain_params = {p.name for p in reg.get("domain", "multi_mnist").params}
    assert {"batch_size", "tasks", "train_pairs", "root"} <= domain_params


FAKE_PLUGIN = '''
"""A third-party plugin as a user might install it: one extra component of each core kind."""
from mtl_platform.contracts import Architecture, Domain, Weighting
from mtl_platform.hookspecs import hookimpl


class ExtraWeighting(Weighting):
    """An extra weighting."""

    name = "extra_weighting"


class ExtraArchitecture(Architecture):
    """An extra architecture."""

    name = "extra_architecture"


class ExtraDomain(Domain):
    """An extra domain."""

    name = "extra_domain"


@hookimpl
def mtl_register(registry):
    registry.add_weighting(ExtraWeighting)
    registry.add_architecture(ExtraArchitecture)
    registry.add_domain(ExtraDomain)
'''
EXTRAS = {"weighting": "extra_weighting", "architecture": "extra_architecture", "domain": "extra_domain"}


@pytest.fixture
def third_party_installed(tmp_path, monkeypatch):
    """A plugin laid out on ``sys.path`` as pip installs one: its package and a dist-info with
    ``entry_points.txt`` in the ``mtl_platform`` group (as tests/core/test_third_party_plugin.py)."""
    import importlib
    import sys

    site = tmp_path / "site"
    (site / "fake_mtl_plugin").mkdir(parents=True)
    (site / "fake_mtl_plugin" / "__init__.py").write_text(FAKE_PLUGIN)
    info = site / "fake_mtl_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-mtl-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[mtl_platform]\nfake_mtl_plugin = fake_mtl_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield
    sys.modules.pop("fake_mtl_plugin", None)
    importlib.invalidate_caches()


def test_registries_of_tests_are_hermetic(third_party_installed):
    """With a third-party plugin installed, ``builtin_only=True`` neither imports nor registers
    it, and the tests of this file (and the declared-range walk, and the generated docs)
    still pass; a plain ``load()`` does see its components."""
    import inspect
    import sys
    from pathlib import Path

    import test_param_bounds
    from mtl_platform.reference import MARK, PAGES

    root = Path(__file__).resolve().parents[2]

    builtin, pm = registry.load(builtin_only=True)
    assert "fake_mtl_plugin" not in sys.modules
    assert "fake_mtl_plugin" not in {name for name, _ in pm.list_name_plugin()}
    assert all(name not in builtin.names(kind) for kind, name in EXTRAS.items())
    for name, test in sorted(globals().items()):
        if name.startswith("test_") and name != "test_registries_of_tests_are_hermetic" \
                and not inspect.signature(test).parameters:
            test()
    for name, match in [("weighting:dwx", "did you mean 'weighting:dwa'"), ("fake_mtl_plugin", "no plugin named")]:
        test_disabling_something_unknown_is_an_error(name, match)
    cases = test_param_bounds.numeric_cases(builtin)
    test_param_bounds.test_every_numeric_parameter_declares_its_range(cases)
    for page, make in PAGES.items():
        assert (root / page).read_text().split(MARK, 1)[1] == make(), page

    everything, pm = registry.load()
    assert "fake_mtl_plugin" in {name for name, _ in pm.list_name_plugin()}
    assert all(everything.get(kind, name).plugin == "fake_mtl_plugin" for kind, name in EXTRAS.items())

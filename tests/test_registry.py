"""The plugin registry: built-ins through entry points, duplicates, did-you-mean, disabling."""
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


def test_builtins_come_through_the_entry_point_group():
    reg, pm = registry.load()
    assert {"ew", "uw", "dwa"} <= set(reg.names("weighting"))
    assert reg.get("weighting", "uw").plugin == "mtl_platform.weightings"
    assert reg.get("architecture", "hps").plugin == "mtl_platform.architectures"
    assert reg.get("domain", "multi_mnist").plugin == "mtl_platform.domains"
    assert "mtl_platform.weightings" in {name for name, _ in pm.list_name_plugin()}


def test_duplicate_names_name_both_plugins():
    with pytest.raises(UserError) as err:
        registry.load(extra_plugins=[make_plugin("third_party", Other)])
    msg = str(err.value)
    assert "duplicate weighting 'ew'" in msg
    assert "mtl_platform.weightings" in msg and "third_party" in msg


def test_a_disabled_component_can_be_replaced_by_a_third_party():
    reg, _ = registry.load(disable=["weighting:ew@mtl_platform.weightings"],
                           extra_plugins=[make_plugin("third_party", Other)])
    assert reg.get("weighting", "ew").cls is Other
    assert reg.get("weighting", "ew").plugin == "third_party"


def test_disabling_a_whole_plugin_removes_its_components():
    full, _ = registry.load()
    reg, pm = registry.load(disable=["mtl_platform.weightings"])
    assert reg.names("weighting") == []
    assert reg.names("architecture") == full.names("architecture") and "hps" in reg.names("architecture")
    assert pm.is_blocked("mtl_platform.weightings")


def test_unknown_name_suggests_the_closest():
    reg, _ = registry.load()
    with pytest.raises(UserError, match=r"unknown weighting 'dwaa' \(did you mean 'dwa'\?\)"):
        reg.get("weighting", "dwaa")


def test_disabling_kind_name_blocks_it_from_every_plugin():
    reg, _ = registry.load(disable=["weighting:ew"], extra_plugins=[make_plugin("third_party", Other)])
    assert "ew" not in reg.names("weighting")


def test_disabled_component_lookup_says_it_is_disabled():
    reg, _ = registry.load(disable=["weighting:dwa"])
    with pytest.raises(UserError, match="disabled"):
        reg.get("weighting", "dwa")


@pytest.mark.parametrize("name, match", [("weighting:dwx", "did you mean 'weighting:dwa'"),
                                         ("mtl_platform.weightingz", "no plugin named")])
def test_disabling_something_unknown_is_an_error(name, match):
    with pytest.raises(UserError, match=match):
        registry.load(disable=[name])


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
        registry.load(extra_plugins=[plugin])


def test_components_declare_their_parameters():
    reg, _ = registry.load()
    params = {p.name: p for p in reg.get("weighting", "dwa").params}
    assert params["T"].type is float and params["T"].default == 2.0 and params["T"].help
    domain_params = {p.name for p in reg.get("domain", "multi_mnist").params}
    assert {"batch_size", "tasks", "train_pairs", "root"} <= domain_params

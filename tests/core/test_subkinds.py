"""Sub-kind choices (DESIGN.md §3.3): a component parameter naming another registered
component (``domain.data: nyuv2`` or ``{name: nyuv2, root: ...}``), resolved against the
registry, validated like any component and built with the run's seed."""
import pytest
import torch

from mtl_platform import registry as registry_mod
from mtl_platform.batches import TensorTaskDataset
from mtl_platform.config import config_hash, resolve
from mtl_platform.contracts import Configurable, Domain
from mtl_platform.errors import UserError
from mtl_platform.experiment import build_domain
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param
from mtl_platform.tasks import RegressionTask


class Source(Configurable):
    def __init__(self, seed=0, **params):
        self.seed, self.config = seed, params


class Alpha(Source):
    name = "alpha"
    params = (Param("scale", float, 1.0, "output scale"),)


class Beta(Source):
    name = "beta"
    params = (Param("root", str, "REQUIRED-ROOT", "a folder"), Param("scale", float, 2.0, "output scale"))


class Toy(Domain):
    name = "toy"
    params = (Param("source", dict, "alpha", "where the data comes from", kind="toy.source"),)

    def build_tasks(self):
        return [RegressionTask("y")]

    def load_split(self, split):
        return TensorTaskDataset(torch.zeros(4, 2), {"y": torch.zeros(4)})


class ToyPlugin:
    @hookimpl
    def mtl_register(self, registry):
        registry.add_domain(Toy)
        registry.add("toy.source", Alpha)
        registry.add("toy.source", Beta)


def load():
    return registry_mod.load(builtin_only=True, extra_plugins=[ToyPlugin()])[0]


def config(source):
    raw = {"domain": {"name": "toy"}, "architecture": "hps", "train": {"device": "cpu"}}
    if source is not None:
        raw["domain"]["source"] = source
    return raw


def test_a_bare_name_a_mapping_and_the_default_resolve_to_validated_mappings():
    reg = load()
    assert resolve(config(None), reg)["domain"]["source"] == {"name": "alpha", "scale": 1.0}
    assert resolve(config("beta"), reg)["domain"]["source"] == {"name": "beta", "root": "REQUIRED-ROOT", "scale": 2.0}
    got = resolve(config({"name": "beta", "scale": "3"}), reg)["domain"]["source"]
    assert got == {"name": "beta", "root": "REQUIRED-ROOT", "scale": 3.0}


@pytest.mark.parametrize("source, message", [
    ("btea", "domain.source.name: unknown toy.source 'btea'"),
    ({"name": "beta", "scal": 1}, "domain.source.scal: unknown key"),
    ({"name": "beta", "scale": "big"}, "domain.source.scale: got 'big'"),
    ({"scale": 1}, "domain.source.name: missing required key"),
    (3, "domain.source: got 3, expected a name or a mapping with 'name'"),
])
def test_bad_choices_are_one_line_errors_naming_the_key(source, message):
    with pytest.raises(UserError) as err:
        resolve(config(source), load())
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    if source == "btea":
        assert "beta" in str(err.value)  # did you mean


def test_build_domain_builds_the_chosen_source_with_the_runs_seed_and_its_params():
    reg = load()
    cfg = resolve(config({"name": "beta", "scale": 5}), reg)
    cfg["train"]["seed"] = 7
    domain = build_domain(cfg, reg)
    source = domain.config["source"]
    assert isinstance(source, Beta) and source.seed == 7 and source.config == {"root": "REQUIRED-ROOT", "scale": 5.0}


def test_the_config_hash_names_where_the_chosen_source_came_from():
    reg = load()
    cfg = resolve(config("beta"), reg)

    class Replacement(Beta):
        pass

    class Other:
        @hookimpl
        def mtl_register(self, registry):
            registry.add("toy.source", Replacement, name="beta")

    replaced = registry_mod.load(builtin_only=True, disable=["toy.source:beta@" + reg.get("toy.source", "beta").plugin],
                                 extra_plugins=[ToyPlugin(), Other()])[0]
    assert replaced.get("toy.source", "beta").cls is Replacement
    assert config_hash(cfg, registry=reg) != config_hash(cfg, registry=replaced)
    assert config_hash(cfg, registry=reg) == config_hash(cfg, registry=load())

"""Multi-source UDA (spec gradients.md §3.4): ``data.source`` as a list, ``combined`` equal to a
merged source, ``separate`` batches holding every source, the checks on the source list, and a
tiny run of every method on combined sources."""
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.data import Dataset

from mtl_platform import registry as registry_mod
from mtl_platform.config import apply_overrides, resolve
from mtl_platform.errors import UserError
from mtl_platform.experiment import build_experiment
from mtl_platform.params import Param, resolve_params
from mtl_platform_plugins.domains.uda.contract import UDAData, check_pair
from mtl_platform_plugins.domains.uda.domain import UDA
from mtl_platform_plugins.domains.uda.methods.dann import DANN
from mtl_platform_plugins.domains.uda.methods.pseudo_label import PseudoLabel
from mtl_platform_plugins.domains.uda.streams import Merged, PairedStreams

from test_uda_data import digits_root  # noqa: F401  (fixture: MNIST/USPS files in torchvision's format)

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[4]
CONFIG = ROOT / "configs" / "uda" / "mnist_to_uci.yaml"
TINY = ["domain.iterations=2", "domain.batch_size=4", "train.epochs=1", "train.device=cpu", "baselines.stl=false"]
SIZES = {"a": 7, "b": 5, "c": 6}


class Tensors(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class Blocks(UDAData):
    """Three tiny domains whose images tell where they come from (every pixel = domain code
    × 100 + index), and ``ab``, the merged data of ``a`` then ``b``."""

    name = "blocks"
    domains = ("a", "b", "c", "ab")
    num_classes = 3
    image_shape = (1, 28, 28)
    params = (Param("source", str, "a", "source", choices=domains),
              Param("target", str, "c", "target", choices=domains))

    def __init__(self, seed=0, **params):
        params = resolve_params(self.declared_params(), params, "domain.data")
        super().__init__(seed=seed, **params)
        check_pair(self.domains, params["source"], params["target"])

    def load(self, domain, split):
        if domain == "ab":
            a, b = self.load("a", split), self.load("b", split)
            return Tensors(torch.cat([a.x, b.x]), torch.cat([a.y, b.y]))
        code = "abc".index(domain) + 1
        n = SIZES[domain] + (0 if split == "train" else 1)
        values = code * 100 + torch.arange(n, dtype=torch.float32) + (0.5 if split == "test" else 0.0)
        return Tensors(values[:, None, None, None].expand(n, 1, 28, 28).clone(), torch.arange(n) % 3)


def domain(source, method=None, **kw):
    params = resolve_params(UDA.declared_params(), {"backbone": "lenet", **kw}, "domain")
    params.update(data=Blocks(source=source, target="c"), method=method or DANN())
    d = UDA(seed=0, **params)
    d.prepare()
    return d


def codes(x):
    """Each sample's domain code (1 a, 2 b, 3 c)."""
    return (x[:, 0, 0, 0] // 100).long()


def test_combined_sources_give_exactly_the_batches_of_the_merged_dataset():
    merged = domain(["a", "b"])
    single = domain("ab")
    assert len(merged.dataset("train")) == SIZES["a"] + SIZES["b"] and merged.iterations() == single.iterations()
    for one, two in zip(merged.loaders("train", epoch=1), single.loaders("train", epoch=1)):
        for u, v in zip(one, two):
            assert torch.equal(u, v)
    assert {1, 2} == set(codes(torch.stack([merged.dataset("train")[i][0] for i in range(12)])).tolist())
    val = merged.dataset("val")  # the sources' held-out data, merged: selection sees no target label
    assert len(val) == SIZES["a"] + SIZES["b"] + 2 and set(codes(torch.stack([v[0] for v in val])).tolist()) == {1, 2}


def test_separate_batches_hold_batch_size_samples_of_each_source_and_of_the_target():
    d = domain(["a", "b"], method=PseudoLabel(), multi_source="separate", batch_size=4)
    assert d.task_names == ["target", "source_a", "source_b"] and d.eval_tasks == ["classification"]
    assert d.iterations() == 2  # one pass over the longest source (a: 7 images)
    seen = {1: set(), 2: set()}
    for xs, ys, xt, progress in d.loaders("train", epoch=0):
        assert len(xs) == len(ys) == 2
        for k, (x, y) in enumerate(zip(xs, ys)):
            assert x.shape[0] == y.shape[0] == 4 and torch.all(codes(x) == k + 1)
            seen[k + 1] |= set((x[:, 0, 0, 0] % 100).long().tolist())
        assert xt.shape[0] == 4 and torch.all(codes(xt) == 3)
    assert seen[1] == set(range(7))  # a's 8 draws: its first cycle holds every image
    assert seen[2] == set(range(5))  # b's 8 draws cycle over all 5
    # the first source's stream is exactly the single-source stream
    single = domain("a", batch_size=4)
    for (xs, _, xt, _), (x1, _, xt1, _) in zip(d.loaders("train", epoch=0), single.loaders("train", epoch=0)):
        assert torch.equal(xs[0], x1) and torch.equal(xt, xt1)


def test_separate_pseudo_label_gives_each_source_its_own_head_and_loss():
    d = domain(["a", "b"], method=PseudoLabel(threshold=0.0), multi_source="separate", batch_size=4)
    reg, _ = registry_mod.load()
    model = reg.get("architecture", "hps").cls(d.task_names, d.encoder_factory, d.head_factory)
    losses = d.losses(next(iter(d.loaders("train", epoch=0))), model)
    assert set(losses) == {"target", "source_a", "source_b"}
    grads = torch.autograd.grad(losses["source_a"], list(model.heads["source_b"].parameters()), allow_unused=True)
    assert all(g is None or torch.count_nonzero(g) == 0 for g in grads)


def test_existing_methods_refuse_separate_sources_in_one_line():
    with pytest.raises(UserError, match="domain.multi_source: separate needs a method that takes one stream per "
                                        "source .pseudo_label.; dann takes one labelled source"):
        domain(["a", "b"], multi_source="separate")
    domain("a", multi_source="separate")  # one source: nothing to separate


def test_the_stl_baseline_of_separate_sources_is_source_only_on_the_merged_sources():
    section = {"name": "uda", "method": {"name": "pseudo_label"}, "multi_source": "separate"}
    assert UDA.stl_domain_config(section) == {"name": "uda", "method": {"name": "source_only"},
                                              "multi_source": "combined"}


def test_merged_get_batch_matches_item_by_item():
    class Batched(Tensors):
        def get_batch(self, index):
            return self.x[index], self.y[index]

    parts = [Batched(torch.arange(3.0)[:, None], torch.arange(3)), Batched(torch.arange(10.0, 14.0)[:, None],
                                                                         torch.arange(4))]
    merged = Merged(parts)
    index = torch.tensor([5, 0, 3, 6, 2])
    x, y = merged.get_batch(index)
    assert x[:, 0].tolist() == [12.0, 0.0, 10.0, 13.0, 2.0] and y.tolist() == [2, 0, 0, 3, 2]
    assert merged[4] == (parts[1][1][0], parts[1][1][1])


@pytest.mark.parametrize("source, target, message", [
    (["a", "x"], "c", "domain.data.source[1]: got 'x', allowed: 'a', 'b', 'c', 'ab'"),
    (["a", "a"], "c", "domain.data.source: 'a' listed more than once"),
    (["a", "c"], "c", "domain.data.target: 'c' is also a source"),
    ("c", "c", "domain.data.target: equals domain.data.source ('c')"),
    ([], "c", "domain.data.source: got an empty list"),
])
def test_bad_source_lists_are_one_line_errors(source, target, message):
    with pytest.raises(UserError) as err:
        Blocks(source=source, target=target)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_single_source_stays_a_string_and_a_list_stays_a_list():
    assert Blocks(source="a").config["source"] == "a"
    both = Blocks(source=["b", "a"])
    assert both.config["source"] == ["b", "a"] and both.sources() == ["b", "a"]


@pytest.mark.parametrize("sets, message", [
    (["domain.data.source=[mnist, svhn, mnist]"], "domain.data.source: 'mnist' listed more than once"),
    (["domain.data.source=[mnist, uci]"], "domain.data.target: 'uci' is also a source"),
    (["domain.data.source=[mnist, usps]", "domain.multi_source=separate"],
     "domain.multi_source: separate needs a method that takes one stream per source"),
    (["domain.multi_source=both"], "domain.multi_source: got 'both'"),
])
def test_bad_multi_source_configs_exit_2_with_one_line(tmp_path, capsys, digits_root, sets, message):  # noqa: F811
    from mtl_platform.cli import main

    argv = [*TINY, f"domain.data.root={digits_root}", *sets, f"output.root={tmp_path / 'runs'}"]
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(CONFIG), *(a for s in argv for a in ("--set", s))])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert message in err, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


METHODS = {"dann": ["domain.method.hidden=16"], "cdan": ["domain.method.hidden=16"],
           "mcd": ["domain.method.hidden=16"], "mdd": [],
           "dwl": ["domain.method.source_steps=1", "domain.method.generator_steps=1", "domain.method.hidden=16"],
           "source_only": [], "pseudo_label": ["domain.method.threshold=0"]}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_runs_on_combined_digit_sources(method, digits_root):  # noqa: F811
    reg, _ = registry_mod.load()
    sets = [*TINY, f"domain.data.root={digits_root}", "domain.data.source=[mnist, usps]", "domain.data.target=uci",
            "domain.data.train_per_domain=16", f"domain.method.name={method}", *METHODS[method]]
    raw, _ = apply_overrides(yaml.safe_load(CONFIG.read_text()), sets)
    exp = build_experiment(resolve(raw, reg), reg)
    parts = [exp.domain.data.load(s, "train") for s in ("mnist", "usps")]
    assert isinstance(exp.domain.dataset("train"), Merged) and exp.domain.dataset("train").parts[1].labels.equal(
        parts[1].labels) and len(exp.domain.dataset("train")) == sum(len(p) for p in parts)
    before = [p.detach().clone() for p in exp.model.encoder.parameters()]
    for batch in exp.domain.loaders("train", epoch=0):
        losses = exp.domain.train_step(batch, exp.model, exp.engine, exp.optimizers).losses
        assert all(torch.isfinite(v) for v in losses.values()), method
    assert any(not torch.equal(a, b) for a, b in zip(before, exp.model.encoder.parameters())), method
    assert 0.0 <= exp.domain.evaluate(exp.model, "test")["classification"]["accuracy"] <= 1.0

"""Declared parameters are set by the contract (``Configurable.set_params``, called by
``Weighting.__init__``, then ``setup()``): typed, defaulted and checked as the config does it;
the older hand-written ``__init__`` keeps working; no built-in weighting writes one."""
from __future__ import annotations

import re

import pytest
import torch

from mtl_platform import session
from mtl_platform.contracts import Weighting
from mtl_platform.errors import UserError
from mtl_platform.gradients.combine import call_weighting
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import REQUIRED, Param


class Probe(Weighting):
    name = "probe"
    params = (
        Param("rate", float, 1.0, "a float", bounds="[0, inf)"),
        Param("steps", int, 3, "an int", bounds="[1, inf)"),
        Param("flag", bool, False, "a bool"),
        Param("kind", str, "a", "a choice", choices=("a", "b")),
        Param("cap", float, None, "an optional float", optional=True, bounds="[1, inf)"),
        Param("prefs", list, None, "a list of floats", item=float, optional=True, bounds="[0, inf)"),
    )

    def setup(self):
        self.setup_calls = getattr(self, "setup_calls", 0) + 1
        self.seen_in_setup = (self.rate, self.steps, self.flag, self.kind, self.cap, self.prefs)


def test_declared_parameters_are_attributes_typed_like_the_config_before_setup():
    w = Probe(["a", "b"], rate=2, steps=4.0, prefs=[1, 2])
    assert (w.rate, w.steps, w.flag, w.kind, w.cap, w.prefs) == (2.0, 4, False, "a", None, [1.0, 2.0])
    assert type(w.rate) is float and type(w.steps) is int and all(type(p) is float for p in w.prefs)
    assert w.setup_calls == 1 and w.seen_in_setup == (2.0, 4, False, "a", None, [1.0, 2.0])
    assert w.config == {"rate": 2.0, "steps": 4, "flag": False, "kind": "a", "cap": None, "prefs": [1.0, 2.0]}
    default = Probe(["a"])
    assert (default.rate, default.steps, default.flag, default.kind, default.cap, default.prefs) == (
        1.0, 3, False, "a", None, None)


@pytest.mark.parametrize("given, message", [
    ({"rate": -1}, "weighting.rate: got -1, expected finite float >= 0"),
    ({"rate": float("nan")}, "weighting.rate: got nan, expected finite float >= 0"),
    ({"steps": 2.5}, "weighting.steps: got 2.5 (float), expected int >= 1"),
    ({"flag": "yes"}, "weighting.flag: got 'yes' (str), expected bool"),
    ({"kind": "c"}, "weighting.kind: got 'c', allowed: 'a', 'b'"),
    ({"cap": 0.5}, "weighting.cap: got 0.5, expected finite float >= 1"),
    ({"prefs": [1, -1]}, "weighting.prefs[1]: got -1, expected finite float >= 0"),
    ({"steps": None}, "weighting.steps: got null, expected int >= 1"),
])
def test_a_weighting_built_in_process_refuses_what_the_config_refuses(given, message):
    with pytest.raises(UserError, match="^" + re.escape(message)):
        Probe(["a", "b"], **given)


def test_a_missing_required_parameter_is_one_clear_error():
    class NeedsK(Weighting):
        name = "needs_k"
        params = (Param("k", float, REQUIRED, "the k", bounds="(0, inf)"),)

    with pytest.raises(UserError, match=r"^weighting\.k: missing required key \(finite float > 0: the k\)"):
        NeedsK(["a"])
    assert NeedsK(["a"], k=2).k == 2.0


def test_a_parameter_named_like_a_method_is_left_in_config_not_hiding_the_method():
    class Named(Weighting):
        name = "named"
        params = (Param("weights", dict, None, "task → weight", optional=True, item=float, bounds="[0, inf)"),
                  Param("train", bool, True, "named like nn.Module.train"))

        def weights(self, losses, **computed):
            return torch.tensor([self.config["weights"][t] for t in self.tasks], dtype=losses.dtype)

    w = Named(["a", "b"], weights={"a": 2, "b": 0.5}, train=False)
    assert w.config["weights"] == {"a": 2, "b": 0.5} and w.config["train"] is False
    assert torch.equal(w.weights(torch.ones(2)), torch.tensor([2.0, 0.5]))
    assert w.train(False) is w and not w.training   # still nn.Module.train


def test_a_buffer_may_take_a_parameters_name_but_other_clashes_still_fail():
    class Buffered(Weighting):
        name = "buffered"
        params = (Param("floor", list, None, "per-task floors", item=float, optional=True, bounds="[0, inf)"),)

        def setup(self):
            self.register_buffer("floor", torch.tensor(self.floor or [0.0] * len(self.tasks)))

    w = Buffered(["a", "b"], floor=[1, 2])
    assert torch.equal(w.floor, torch.tensor([1.0, 2.0])) and "floor" in w.state_dict()
    assert w.config["floor"] == [1.0, 2.0]

    class Clash(Weighting):
        name = "clash"

        def setup(self):
            self.other = 1
            self.register_buffer("other", torch.zeros(1))

    with pytest.raises(KeyError, match="already exists"):
        Clash(["a"])


class OldForm(Weighting):
    """Written the older way: an ``__init__`` that assigns its parameters itself, a buffer named
    like one of them, and a parameter left out of the ``super().__init__`` call."""

    name = "old_form"
    params = (Param("eps", float, 1e-8, "floor on the first losses", bounds="[0, inf)"),
              Param("floor", list, None, "per-task loss floors", item=float, optional=True, bounds="[0, inf)"),
              Param("scale", float, 1.0, "a common factor", bounds="(0, inf)"))

    def __init__(self, tasks, eps=1e-8, floor=None, scale=1.0, **params):
        super().__init__(tasks, eps=eps, floor=floor, **params)
        self.eps = float(eps)
        self.scale = float(scale) * 2                       # its own reading of a parameter wins
        self.register_buffer("floor", torch.tensor([float(f) for f in (floor or [0.0] * len(self.tasks))]))
        self.register_buffer("initial", torch.ones(len(self.tasks)))
        self.register_buffer("seen", torch.zeros((), dtype=torch.bool))

    def weights(self, losses, **computed):
        first = (losses.detach() - self.floor.to(losses)).to(self.initial)
        self.initial.copy_(torch.where(self.seen, self.initial, first))
        self.seen.fill_(True)
        return self.scale / self.initial.clamp_min(self.eps)


def test_a_weighting_written_the_older_way_works_unchanged(write_config):
    w = OldForm(["a", "b"], eps=0.5, floor=[0.25, 0.0], scale=3)
    assert (w.eps, w.scale) == (0.5, 6.0) and torch.equal(w.floor, torch.tensor([0.25, 0.0]))
    answer, _ = call_weighting(w, torch.tensor([1.25, 4.0]), torch.eye(2))
    assert torch.equal(answer, torch.tensor([6.0, 1.5]))

    class Plugin:
        @hookimpl
        def mtl_register(self, registry):
            registry.add_weighting(OldForm)

    config = write_config({"weighting": {"name": "old_form", "eps": 1e-3}, "train.epochs": 1})
    results = session.train(config, progress=False, echo=lambda *a, **k: None, extra_plugins=[Plugin()])
    assert all(0.0 <= results["mtl"][t]["accuracy"] <= 1.0 for t in ("left", "right"))


def test_no_built_in_weighting_writes_an_init(builtin_registry):
    written = [c.name for c in builtin_registry.components("weighting") if "__init__" in vars(c.cls)]
    assert written == []

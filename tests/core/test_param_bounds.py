"""Every numeric parameter declares the interval it allows, and every value outside it (or
not finite, or of the wrong type) is refused with one line naming the key path.

The cases are generated from the declarations of every registered built-in component (and
sub-kind, and nested section) and of the config's own sections, so a parameter added
tomorrow is covered without editing this file. Nothing is built or trained here except the
few CLI cases at the end, which stop at validation.
"""
from __future__ import annotations

import math

import pytest

from mtl_platform.cli import main
from mtl_platform.config import FIXED_SECTIONS, resolve
from mtl_platform.errors import UserError
from mtl_platform.params import Interval, Param, flatten

from conftest import run_dirs

BASE_DOMAIN = "multi_mnist"


def valid(p: Param):
    """A value ``p`` accepts (for required parameters, which have no default)."""
    if p.choices:
        return p.choices[0]
    return {str: "x", int: 1, float: 1.0, bool: True, list: [], dict: {}}[p.type]


def required_of(params) -> dict:
    return {p.name: valid(p) for p in params if p.required}


def nest(dotted: str, value) -> dict:
    """``search.tau`` -> ``{"search": {"tau": value}}``."""
    *parents, last = dotted.split(".")
    out = {last: value}
    for part in reversed(parents):
        out = {part: out}
    return out


def numeric_cases(reg):
    """(key path, param, config builder) for every numeric parameter a config can set."""
    cases = []
    for section, params in FIXED_SECTIONS.items():
        for p in flatten(params):
            cases.append((f"{section}.{p.name}", p,
                          lambda v, s=section, p=p: {"domain": BASE_DOMAIN, s: nest(p.name, v)}))
    for kind in ("architecture", "weighting"):
        for comp in reg.components(kind):
            for p in flatten(comp.params):
                cases.append((f"{kind}.{p.name}", p, lambda v, k=kind, c=comp, p=p: {
                    "domain": BASE_DOMAIN, k: {"name": c.name, **required_of(c.params), **nest(p.name, v)}}))
    for dom in reg.components("domain"):
        base = {"name": dom.name, **required_of(dom.params)}
        for p in flatten(dom.params):
            cases.append((f"domain.{p.name}", p, lambda v, b=base, p=p: {"domain": {**b, **nest(p.name, v)}}))
        for choice in (p for p in dom.params if p.kind is not None):  # sub-kinds: domain.data, domain.method
            for sub in reg.components(choice.kind):
                own = {"name": sub.name, **required_of(sub.params)}
                for p in flatten(sub.params):
                    cases.append((f"domain.{choice.name}.{p.name}", p, lambda v, b=base, ch=choice, o=own, p=p: {
                        "domain": {**b, ch.name: {**o, **nest(p.name, v)}}}))
    return [c for c in cases if c[1].type in (int, float) or c[1].item in (int, float)]


def just_outside(bounds: Interval, number: type) -> list:
    """The nearest values below and above ``bounds`` that it must refuse."""
    out = []
    if not math.isinf(bounds.low):
        out.append(bounds.low if bounds.low_open else
                   (bounds.low - 1 if number is int else math.nextafter(bounds.low, -math.inf)))
    if not math.isinf(bounds.high):
        out.append(bounds.high if bounds.high_open else
                   (bounds.high + 1 if number is int else math.nextafter(bounds.high, math.inf)))
    return out


def bad_numbers(p: Param) -> list:
    """Values one number of ``p`` must refuse, generated from its type and bounds."""
    number = p.item if p.type in (list, dict) else p.type
    bad = [math.nan, math.inf, -math.inf, "nan", "-inf", "abc", True, [1]]
    if number is float:
        bad.append(10 ** 400)                     # an int no float can hold
    else:
        bad += [1.5, "1e400"]
    if p.choices:
        bad.append(max(p.choices) + 1)
    if p.bounds is not None:
        bad += just_outside(p.bounds, number)
    return bad


@pytest.fixture(scope="module")
def cases():
    from mtl_platform import registry

    return numeric_cases(registry.load(builtin_only=True)[0])


def test_every_numeric_parameter_declares_its_range(cases):
    """A parameter without bounds (or choices) fails here, whichever component it belongs to."""
    assert len(cases) > 100  # the walk reached the components, sub-kinds and sections
    assert {"optimizer.lr", "train.seed", "weighting.beta", "architecture.search.tau",
            "domain.method.trade_off", "domain.data.val_fraction", "domain.batch_size"} <= {c[0] for c in cases}
    missing = sorted({path for path, p, _ in cases if p.bounds is None and not p.choices})
    assert not missing, f"numeric parameters without declared bounds: {missing}"


def test_every_default_lies_in_its_declared_range(cases):
    for path, p, _ in cases:
        if p.default is not None and not p.required:
            p.coerce(p.default, path)


def test_every_bad_number_is_refused_with_its_key_path(cases, builtin_registry):
    checked = 0
    for path, p, build in cases:
        for value in bad_numbers(p):
            if p.type is list:
                given, where = [value], f"{path}[0]"
            elif p.type is dict:
                given, where = {"k": value}, f"{path}.k"
            else:
                given, where = value, path
            with pytest.raises(UserError) as err:
                resolve(build(given), builtin_registry)
            message = str(err.value)
            assert message.startswith(f"{where}: got "), (path, value, message)
            assert "\n" not in message and len(message) < 300, message
            checked += 1
    assert checked > 1000


def test_containers_of_numbers_refuse_a_non_container(cases, builtin_registry):
    for path, p, build in cases:
        if p.type in (list, dict):
            with pytest.raises(UserError, match=rf"^{path}: got 'abc' \(str\), expected "):
                resolve(build("abc"), builtin_registry)


@pytest.mark.parametrize("text, inside, outside", [
    ("[0, 1)", [0, 0.5, 1 - 1e-12], [-1e-300, 1, math.inf]),
    ("(0, inf)", [1e-300, 1e300], [0, -1, -math.inf]),
    ("[1, inf)", [1, 10 ** 30], [0, 0.999]),
    ("[-1, 1]", [-1, 0, 1], [-1.0000001, 1.0000001]),
])
def test_intervals_read_as_written(text, inside, outside):
    bounds = Interval.parse(text)
    assert str(bounds) == text
    assert all(x in bounds for x in inside) and not any(x in bounds for x in outside)


@pytest.mark.parametrize("text", ["[0, inf]", "(1, 0)", "(0, 0]", "0..1", "[a, 1]", "[0; 1]"])
def test_a_malformed_interval_is_a_declaration_error(text):
    with pytest.raises(ValueError, match="bounds"):
        Param("x", float, 0.5, bounds=text)


def test_bounds_need_a_numeric_parameter():
    with pytest.raises(ValueError, match="bounds need an int or float"):
        Param("x", str, "a", bounds="[0, 1]")


@pytest.mark.parametrize("param, shown", [
    (Param("beta", float, 0.9, bounds="[0, 1)"), "finite float in [0, 1)"),
    (Param("lr", float, 0.1, bounds="(0, inf)"), "finite float > 0"),
    (Param("n", int, 1, minimum=1), "int >= 1"),
    (Param("n", int, None, optional=True, bounds="[1, inf)"), "int >= 1 or null"),
    (Param("init", float, 0.0, bounds="(-inf, inf)"), "finite float"),
    (Param("betas", list, [0.9], item=float, bounds="[0, 1)"), "list of finite float, each in [0, 1)"),
    (Param("w", dict, {}, item=float, bounds="[0, inf)"), "mapping to finite float, each >= 0"),
])
def test_mtl_list_prints_the_range(param, shown):
    assert param.describe_allowed() == shown


def test_weightings_built_in_process_check_the_same_ranges(builtin_registry):
    """The contract's ``__init__`` runs the declared check, so a weighting made in a notebook
    refuses what the config refuses (the hand-written checks it replaced did the same)."""
    tasks = ["a", "b"]
    built = 0
    for comp in builtin_registry.components("weighting"):
        for p in comp.params:
            if p.bounds is None:
                continue
            for value in (math.nan, math.inf) + tuple(just_outside(p.bounds, p.item or p.type)):
                given = [value, value] if p.type is list else {"a": value, "b": 1.0} if p.type is dict else value
                with pytest.raises(UserError, match=rf"^weighting\.{p.name}(\[0\]|\.a)?: got "):
                    comp.cls(tasks, **{p.name: given})
                built += 1
    assert built > 50


def test_a_ranged_value_inside_its_bounds_is_kept(builtin_registry):
    out = resolve({"domain": BASE_DOMAIN, "weighting": {"name": "db_mtl", "beta": "0.5"},
                   "optimizer": {"betas": [0, "0.5"], "lr_mult": {"head": 10}}}, builtin_registry)
    assert out["weighting"]["beta"] == 0.5
    assert out["optimizer"]["betas"] == [0.0, 0.5]
    assert out["optimizer"]["lr_mult"] == {"head": 10} and isinstance(out["optimizer"]["lr_mult"]["head"], int)


CLI_CASES = {
    # case: (extra args, raw YAML or None, the one line expected on stderr)
    "--set .nan": (["--set", "optimizer.lr=.nan"], None,
                   "mtl: error: --set optimizer.lr: got nan, expected finite float > 0"),
    "--set .inf": (["--set", "weighting.name=gh_plus_plus", "--set", "weighting.lam=.inf"], None,
                   "mtl: error: --set weighting.lam: got inf, expected finite float in [0, 1]"),
    "--set -.inf": (["--set", "architecture.name=ltb", "--set", "architecture.search.tau=-.inf"], None,
                    "mtl: error: --set architecture.search.tau: got -inf, expected finite float > 0"),
    "YAML .nan": ([], "weighting: {name: db_mtl, beta: .nan}\n",
                  "mtl: error: weighting.beta: got nan, expected finite float in [0, 1)"),
    "YAML .inf": ([], "domain: {name: multi_mnist, dropout: .inf}\n",
                  "mtl: error: domain.dropout: got inf, expected finite float in [0, 1)"),
    "YAML -.inf": ([], "scheduler: {name: inv, inv_power: -.inf}\n",
                   "mtl: error: scheduler.inv_power: got -inf, expected finite float >= 0"),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_non_finite_values_on_the_command_line_and_in_yaml(case, write_config, tmp_path, capsys):
    extra, raw, line = CLI_CASES[case]
    path = write_config()
    if raw is not None:  # the tiny config with one section replaced by the raw YAML text
        import yaml

        cfg = yaml.safe_load(path.read_text())
        cfg.update(yaml.safe_load(raw))
        text = yaml.safe_dump(cfg)
        assert (".nan" in text or ".inf" in text), text  # the file really holds the YAML spelling
        path.write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(path), "--no-progress"] + extra)
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2
    assert err.strip().splitlines() == [line]
    assert "Traceback" not in out + err
    assert run_dirs(tmp_path / "runs") == []


def test_adam_betas_of_the_wrong_length_are_refused_in_one_line(write_config, tmp_path, capsys):
    """A range check cannot see the length: [0.9] ended in torch's IndexError."""
    path = write_config()
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(path), "--no-progress", "--set", "optimizer.betas=[0.9]"])
    _, err = capsys.readouterr()
    assert exit_info.value.code == 2
    assert err.strip().splitlines() == ["mtl: error: optimizer.betas: got [0.9], expected two floats [β₁, β₂] in [0, 1)"]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())

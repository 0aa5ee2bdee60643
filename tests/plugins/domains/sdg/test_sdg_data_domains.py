"""check_domains (plugins/domains/sdg/data/domains.py): a config's source and target domains,
canonical names, one clear line per mistake."""
from __future__ import annotations

import pytest

from mtl_platform.errors import UserError
from mtl_platform_plugins.domains.sdg.data.domains import check_domains

PACS = ("art_painting", "cartoon", "photo", "sketch")
ALIASES = {"A": "art_painting", "C": "cartoon", "P": "photo", "S": "sketch"}


def _check(source, targets=None, **kw):
    kw.setdefault("aliases", ALIASES)
    return check_domains("pacs", PACS, source, targets, **kw)


def test_defaults_lists_and_aliases():
    assert _check("photo") == (["photo"], ["art_painting", "cartoon", "sketch"])
    assert _check("P", "S") == (["photo"], ["sketch"])
    assert _check(["A", "cartoon"], ["S"]) == (["art_painting", "cartoon"], ["sketch"])
    assert _check(("photo",), ("art_painting", "C")) == (["photo"], ["art_painting", "cartoon"])


@pytest.mark.parametrize("source, targets, message", [
    ("foto", None, r"^domain\.data\.source: pacs has no domain 'foto'; allowed: art_painting, cartoon, photo, "
                   r"sketch \(aliases A=art_painting, C=cartoon, P=photo, S=sketch\) \(did you mean 'photo'\?\)$"),
    ("photo", ["sketch", "clipart"], r"^domain\.data\.targets\[1\]: pacs has no domain 'clipart'; allowed: "),
    ("photo", "photo", r"^domain\.data\.targets: 'photo' is also a source; targets are unseen domains: "
                       r"art_painting, cartoon, sketch"),
    (["photo", "A"], ["art_painting"], r"^domain\.data\.targets\[0\]: 'art_painting' is also a source"),
    ("photo", [], r"^domain\.data\.targets: empty; name at least one unseen domain of pacs \(art_painting, "
                  r"cartoon, sketch.*or null for all of them$"),
    (list(PACS), None, r"^domain\.data\.targets: no target domain left: every domain of pacs"),
    (None, None, r"^domain\.data\.source: missing; the pacs source domain, one of art_painting"),
    ([], None, r"^domain\.data\.source: missing"),
    (["photo", "P"], None, r"^domain\.data\.source\[1\]: 'photo' is named twice"),
    ("photo", ["sketch", "S"], r"^domain\.data\.targets\[1\]: 'sketch' is named twice"),
    (3, None, r"^domain\.data\.source: got 3 \(int\), expected a domain name or a list of them$"),
    ("photo", [1], r"^domain\.data\.targets\[0\]: got 1 \(int\), expected a domain name of pacs"),
])
def test_each_mistake_is_one_line(source, targets, message):
    with pytest.raises(UserError, match=message) as info:
        _check(source, targets)
    assert "\n" not in str(info.value)


def test_test_only_domains_cannot_be_sources():
    domains = ("mnist", "uci", "mnist_m", "shift")
    assert check_domains("digits", domains, "mnist", None, source_domains=("mnist",)) == (
        ["mnist"], ["uci", "mnist_m", "shift"])
    with pytest.raises(UserError, match=r"^domain\.data\.source: 'mnist_m' is a test-only domain of digits "
                                        r"\(it has no training data\); allowed sources: mnist$"):
        check_domains("digits", domains, "mnist_m", None, source_domains=("mnist",))

"""The DomainBed families (plugins/domains/sdg/data/domainbed.py) on tiny fixtures written in
DomainBed's exact layout: root/<dataset folder>/<domain>/<class>/*.jpg, a few 8x8 JPEGs each."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mtl_platform.errors import UserError
from mtl_platform.registry import Registry
from mtl_platform_plugins.domains.sdg.contract import SDGData
from mtl_platform_plugins.domains.sdg.data import register
from mtl_platform_plugins.domains.sdg.data.domainbed import (
    PACS,
    VLCS,
    DomainBedFamily,
    DomainNet,
    OfficeHome,
    TerraIncognita,
)

pytestmark = pytest.mark.usefixtures("one_thread")

from domainbed_tree import CLASSES, LAYOUT, PER_CLASS, _jpeg, _tree  # noqa: E402

FAMILIES = (PACS, VLCS, OfficeHome, TerraIncognita, DomainNet)
@pytest.fixture(scope="module")
def root(tmp_path_factory):
    base = tmp_path_factory.mktemp("domainbed")
    for family in LAYOUT:
        _tree(base, family)
    return base


def test_names_folders_and_domains_are_domainbeds():
    for cls in FAMILIES:
        folder, domains = LAYOUT[cls.name]
        assert issubclass(cls, SDGData) and cls.folder == folder and cls.domains == domains
        assert cls.mean == (0.485, 0.456, 0.406) and cls.std == (0.229, 0.224, 0.225)
    assert [c.num_classes for c in FAMILIES] == [7, 5, 65, 10, 345]
    registry = Registry()
    register(registry)
    assert registry.names("sdg.data") == sorted(["digits", "pacs", "vlcs", "office_home", "terra_incognita",
                                                 "domainnet"])


@pytest.mark.parametrize("cls", FAMILIES, ids=lambda c: c.name)
def test_every_family_reads_its_layout(cls, root):
    _, domains = LAYOUT[cls.name]
    fam = cls(root=str(root), source=domains[0], image_size=6)
    assert fam.targets() == list(domains[1:]) and fam.classes == list(CLASSES) and fam.num_classes == 3
    assert fam.image_shape == (3, 6, 6)
    test = fam.load(domains[-1], "test")
    assert len(test) == 15 and torch.equal(test.labels, torch.arange(3).repeat_interleave(5))
    x, y = test[7]
    assert x.shape == (3, 6, 6) and x.dtype == torch.float32 and y.dtype == torch.int64 and int(y) == 1
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_images_are_resized_deterministically_to_unit_range(root):
    fam = PACS(root=str(root), source="photo", image_size=4)
    x, y = fam.load("sketch", "test")[7]  # domain 3, class 1, image 2: colour (120, 80, 80)
    expected = torch.tensor([120, 80, 80]).view(3, 1, 1) / 255.0
    assert torch.allclose(x, expected.expand(3, 4, 4), atol=3 / 255)  # JPEG rounding of a flat colour
    assert torch.equal(x, fam.load("sketch", "test")[7][0])


def test_source_split_is_domainbeds_holdout_seeded_and_disjoint(root):
    fam = PACS(root=str(root), source="P")
    train, val = fam.load("photo", "train"), fam.load("photo", "val")
    assert (len(train), len(val)) == (12, 3)  # floor(0.2 * 15) = 3
    assert not set(train.indices) & set(val.indices) and sorted([*train.indices, *val.indices]) == list(range(15))
    again = PACS(root=str(root), source="photo").load("photo", "val")
    assert list(again.indices) == list(val.indices)
    seeds = {tuple(PACS(root=str(root), source="photo", data_seed=s).load("photo", "val").indices) for s in range(6)}
    assert len(seeds) > 1
    half = PACS(root=str(root), source="photo", holdout_fraction=0.5).load("photo", "val")
    assert len(half) == 7


def test_aliases_resolve_to_canonical_names(root):
    fam = OfficeHome(root=str(root), source="R", targets=["A", "Clipart"])
    assert fam.sources() == ["Real World"] and fam.targets() == ["Art", "Clipart"]
    assert DomainNet(root=str(root), source=["clip", "real"]).targets() == ["infograph", "painting", "quickdraw",
                                                                             "sketch"]
    assert TerraIncognita(root=str(root), source="L38", targets="L100").targets() == ["location_100"]


def _one_line(exc_info):
    assert "\n" not in str(exc_info.value)
    return str(exc_info.value)


def test_missing_root_dataset_and_domain_folders(tmp_path):
    with pytest.raises(UserError) as info:
        PACS(source="photo")
    msg = _one_line(info)
    assert msg.startswith("domain.data.root: pacs needs the DomainBed data folder (root is null)")
    assert "<root>/PACS/<domain>/<class>/<image>" in msg and "download.py" in msg and "download_pacs" in msg
    with pytest.raises(UserError, match=r"^domain\.data\.root: .*nowhere is not a directory; expected <root>/VLCS/"):
        VLCS(root=str(tmp_path / "nowhere"), source="V")
    with pytest.raises(UserError) as info:
        OfficeHome(root=str(tmp_path), source="Art")
    msg = _one_line(info)
    assert msg.startswith(f"domain.data.root: no office_home folder under {tmp_path} ({tmp_path}/office_home is missing)")
    assert "download_office_home, commented out in its __main__" in msg and "Real World" in msg
    _tree(tmp_path, "pacs", skip=("cartoon",))
    with pytest.raises(UserError) as info:
        PACS(root=str(tmp_path), source="photo")
    msg = _one_line(info)
    assert msg.startswith(f"domain.data.root: domain 'cartoon' of pacs not found ({tmp_path}/PACS/cartoon is missing)")
    assert PACS(root=str(tmp_path), source="photo", targets=["sketch"]).targets() == ["sketch"]


def test_class_lists_must_match(tmp_path):
    _tree(tmp_path, "vlcs")
    _tree(tmp_path, "vlcs", classes=("zebra",), per_class=1, skip=("Caltech101", "LabelMe", "SUN09"))
    with pytest.raises(UserError) as info:
        VLCS(root=str(tmp_path), source="C")
    msg = _one_line(info)
    assert msg.startswith("domain.data.root: the domains of vlcs must share one class list, but Caltech101 has "
                          "3 classes and VOC2007 4 (only in Caltech101: none; only in VOC2007: zebra)")
    fam = VLCS(root=str(tmp_path), source="C", targets=["L", "S"])
    with pytest.raises(UserError, match="must share one class list"):
        fam.load("VOC2007", "test")


def test_bad_names_and_empty_class_folder(root, tmp_path):
    with pytest.raises(UserError, match=r"^domain\.data\.source: pacs has no domain 'Photo'.*did you mean 'photo'"):
        PACS(root=str(root), source="Photo")
    with pytest.raises(UserError, match=r"^domain\.data\.targets\[0\]: 'photo' is also a source"):
        PACS(root=str(root), source="photo", targets=["P"])
    with pytest.raises(UserError, match=r"^domain\.data\.source: missing; the pacs source domain"):
        PACS(root=str(root))
    _tree(tmp_path, "pacs")
    (tmp_path / "PACS" / "sketch" / "dog" / "000.jpg").unlink()
    for i in range(1, PER_CLASS):
        (tmp_path / "PACS" / "sketch" / "dog" / f"{i:03d}.jpg").unlink()
    fam = PACS(root=str(tmp_path), source="photo")
    with pytest.raises(UserError, match=r"^domain\.data\.root: .*dog.*under .*PACS/sketch"):
        fam.load("sketch", "test")
    assert isinstance(fam, DomainBedFamily)

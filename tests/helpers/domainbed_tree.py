"""DomainBed's exact layout, root/<dataset folder>/<domain>/<class>/*.jpg, as tiny JPEG fixtures
(shared by the sdg data and domain tests)."""
import numpy as np
from PIL import Image

# DomainBed's datasets.py: dataset folders; its download.py: the domain folders it leaves
LAYOUT = {
    "pacs": ("PACS", ("art_painting", "cartoon", "photo", "sketch")),
    "vlcs": ("VLCS", ("Caltech101", "LabelMe", "SUN09", "VOC2007")),
    "office_home": ("office_home", ("Art", "Clipart", "Product", "Real World")),
    "terra_incognita": ("terra_incognita", ("location_100", "location_38", "location_43", "location_46")),
    "domainnet": ("domain_net", ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")),
}
CLASSES = ("dog", "elephant", "guitar")
PER_CLASS = 5  # 15 images per domain


def _jpeg(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.empty((8, 8, 3), np.uint8)
    arr[:] = colour
    Image.fromarray(arr).save(path, quality=95)


def _tree(root, family, classes=CLASSES, per_class=PER_CLASS, skip=()):
    folder, domains = LAYOUT[family]
    for d, domain in enumerate(domains):
        if domain in skip:
            continue
        for c, cls in enumerate(classes):
            for i in range(per_class):  # a colour that encodes (domain, class, image)
                _jpeg(root / folder / domain / cls / f"{i:03d}.jpg", (40 * d, 80 * c, 40 * i))
    return root



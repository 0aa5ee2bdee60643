"""The detection data families (sub-kind ``detection.data``): procedural digit scenes (runnable
offline), Pascal VOC and COCO."""


def register(registry) -> None:
    """Add every family to ``registry`` under ``detection.data`` (called by the domain's hook)."""
    from .coco import COCO
    from .digits import DigitScenes
    from .voc import VOC

    for family in (DigitScenes, VOC, COCO):
        registry.add("detection.data", family)

"""The dense-prediction domain: pixel-wise tasks (segmentation, depth, normals, saliency,
keypoints, edges) on NYUv2, CityScapes, PASCAL-Context, Taskonomy or the procedural scenes."""
from mtl_platform.hookspecs import hookimpl


@hookimpl
def mtl_register(registry):
    from .data.cityscapes import CityScapes
    from .data.nyuv2 import NYUv2
    from .data.pascal_context import PascalContext
    from .data.scenes import Scenes
    from .data.taskonomy import Taskonomy
    from .domain import Dense

    registry.add_domain(Dense)
    for source in (Scenes, NYUv2, CityScapes, PascalContext, Taskonomy):
        registry.add("dense.data", source)

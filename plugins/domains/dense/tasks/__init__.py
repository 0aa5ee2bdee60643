"""The dense domain's pixel-wise task kinds (thesis spec §1.1): losses and split-level metrics."""
from .depth import DepthTask
from .normals import NormalTask
from .pixel_l1 import PixelL1Task
from .saliency import SaliencyTask
from .segmentation import SegmentationTask

__all__ = ["DepthTask", "NormalTask", "PixelL1Task", "SaliencyTask", "SegmentationTask"]

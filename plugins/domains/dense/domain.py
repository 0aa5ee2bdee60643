"""Dense prediction as a task domain: one image in, one map per task out (DESIGN.md §3.3, §9)."""
from __future__ import annotations

from mtl_platform.contracts import Domain
from mtl_platform.errors import UserError
from mtl_platform.params import Param

from .contract import DenseData

BACKBONES = ("segnet", "resnet18", "resnet50")


class Dense(Domain):
    """Pixel-wise multi-task learning on a ``dense.data`` source (``data``: ``scenes``, the
    procedural default, or ``nyuv2``, ``cityscapes``, ``pascal_context``, ``taskonomy``).

    The encoder is a staged backbone — MTAN's SegNet (10 stages) or a dilated DeepLab
    ResNet-18/50 (stem, layer1…4; P = 6, thesis §1.3) — with ``width`` scaling its channels
    (64: the standard network; 8–16 for a CPU); ``pretrained`` loads ImageNet weights into the
    ResNets from a local file or a torchvision weights name. Each task gets its own head: an
    ASPP head (DeepLab) on the ResNets, MTAN's conv head on SegNet, output at the image size;
    surface normals are L2-normalised. Tasks, losses and metrics come from the data source.
    """

    name = "dense"
    params = (
        Param("data", dict, "scenes", "the data source: scenes (procedural), nyuv2, cityscapes, pascal_context, "
              "taskonomy, or a plugin's", kind="dense.data"),
        Param("backbone", str, "segnet", "the staged encoder", choices=BACKBONES),
        Param("width", int, 64, "channel width of the backbone (64: the standard network)", bounds="[1, inf)"),
        Param("output_stride", int, 8, "output stride of the dilated ResNets", choices=(8, 16)),
        Param("pretrained", str, None, "ResNet weights: a local file or a torchvision weights name such as "
              "ResNet50_Weights.IMAGENET1K_V1 (null: random init)", optional=True),
        Param("head", str, None, "task heads: aspp or conv (default: aspp on ResNets, conv on SegNet)",
              optional=True, choices=("aspp", "conv")),
        Param("batch_size", int, 8, "training batch size", bounds="[1, inf)"),
        Param("eval_batch_size", int, 16, "batch size for evaluation", bounds="[1, inf)"),
        Param("drop_last", bool, True, "drop the last incomplete training batch (as LibMTL; a batch of one "
              "cannot train the BatchNorm of ASPP's image pooling)"),
    )

    def __init__(self, seed: int = 0, **params):
        source = params.get("data")
        if not isinstance(source, DenseData):
            raise TypeError("Dense(data=...) takes a built dense.data source (experiment.build_domain builds it)")
        self.source = source
        if params.get("pretrained") and params.get("backbone") == "segnet":
            raise UserError("domain.pretrained: only the ResNet backbones (resnet18, resnet50) take pretrained "
                            "weights; use backbone: resnet18 or resnet50, or pretrained: null")
        super().__init__(seed, **params)

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.source.image_size)

    def build_tasks(self):
        return self.source.build_tasks()

    def load_split(self, split):
        return self.source.load_split(split)

    def loaders(self, split: str, epoch: int = 0, start: int = 0):
        data = self.dataset(split)
        if split == "train" and hasattr(data, "set_epoch"):
            data.set_epoch(epoch)  # augmentation draws are a function of (seed, epoch, index)
        return super().loaders(split, epoch, start)

    def encoder_factory(self):
        from .backbones import resnet_encoder, segnet_encoder

        c = self.config
        if c["backbone"] == "segnet":
            h, w = self.image_size
            if h < 32 or w < 32 or h % 32 or w % 32:
                raise UserError(f"domain.data.image_size: {[h, w]} with backbone segnet; its five 2x2 poolings "
                                f"need both sides divisible by 32 (e.g. {[max(32, h // 32 * 32), max(32, w // 32 * 32)]})")
            return segnet_encoder(self.image_size, width=c["width"])
        return resnet_encoder(int(c["backbone"][len("resnet"):]), self.image_size, width=c["width"],
                              output_stride=c["output_stride"], pretrained=c["pretrained"], where="domain.pretrained")

    def head_factory(self, task):
        from .backbones import aspp_head, conv_head

        c = self.config
        channels, normalize = head_outputs(self.task(task))
        kind = c["head"] or ("conv" if c["backbone"] == "segnet" else "aspp")
        encoder_channels = self._encoder_channels()
        if kind == "aspp":
            rates = (12, 24, 36) if c["output_stride"] == 8 else (6, 12, 18)  # DeepLabv3's rates per output stride
            return aspp_head(encoder_channels, channels, self.image_size, rates=rates, width=c["width"],
                             normalize=normalize)
        return conv_head(encoder_channels, channels, self.image_size, normalize=normalize)

    def _encoder_channels(self) -> int:
        if not hasattr(self, "_channels"):
            self._channels = self.encoder_factory().out_shape[0]
        return self._channels


def head_outputs(task) -> tuple[int, bool]:
    """(output channels, L2-normalise) of a task's head: ``task.head_channels`` if the task
    declares it, else by kind — classes for segmentation and saliency, 3 normalised for
    normals, 1 for depth, keypoints and edges."""
    from .tasks import NormalTask, SaliencyTask, SegmentationTask

    declared = getattr(task, "head_channels", None)
    if declared is not None:
        return int(declared), bool(getattr(task, "normalize_output", False))
    if isinstance(task, NormalTask):
        return 3, True
    if isinstance(task, SaliencyTask):
        return 2, False
    if isinstance(task, SegmentationTask):
        return task.num_classes, False
    return 1, False

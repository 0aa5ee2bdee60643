"""Dense-prediction backbones: staged encoders (MTAN's SegNet, DeepLab ResNet), their
pretrained-weight loader, and the per-task heads (ASPP, MTAN's conv head)."""
from .heads import aspp_head, conv_head
from .pretrained import load_pretrained
from .resnet import resnet_encoder
from .segnet import segnet_encoder

__all__ = ["aspp_head", "conv_head", "load_pretrained", "resnet_encoder", "segnet_encoder"]

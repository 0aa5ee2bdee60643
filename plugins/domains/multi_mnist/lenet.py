"""The LeNet-style encoder and heads used for MultiMNIST by Sener & Koltun (NeurIPS 2018)."""
from torch import nn

from mtl_platform.contracts import StagedEncoder


def lenet_encoder(width: int = 1) -> StagedEncoder:
    """Three stages: conv(1→10w, 5)+pool+ReLU, conv(10w→20w, 5)+pool+ReLU, fc(→50w)+ReLU."""
    c1, c2, f = 10 * width, 20 * width, 50 * width
    stages = [
        nn.Sequential(nn.Conv2d(1, c1, 5), nn.MaxPool2d(2), nn.ReLU()),
        nn.Sequential(nn.Conv2d(c1, c2, 5), nn.MaxPool2d(2), nn.ReLU()),
        nn.Sequential(nn.Flatten(), nn.Linear(c2 * 4 * 4, f), nn.ReLU()),
    ]
    return StagedEncoder(stages, out_shape=(f,), stage_shapes=((c1, 12, 12), (c2, 4, 4), (f,)))


def lenet_head(in_features: int, num_classes: int = 10, dropout: float = 0.0) -> nn.Module:
    """A task head: fc(→50)+ReLU, dropout, fc(→classes)."""
    return nn.Sequential(nn.Linear(in_features, 50), nn.ReLU(), nn.Dropout(dropout), nn.Linear(50, num_classes))

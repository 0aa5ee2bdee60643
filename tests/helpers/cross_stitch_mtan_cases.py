"""The tiny staged encoders (2-D and 4-D stage outputs) and the builder that the tests of
cross-stitch and MTAN share (test_cross_stitch.py, test_mtan.py,
test_architecture_family_cross_stitch_mtan.py)."""
import torch
from torch import nn

from mtl_platform.contracts import StagedEncoder

OUT = 3  # every head's output width


def mlp_encoder():
    """2-D stage outputs only."""
    return StagedEncoder([nn.Sequential(nn.Linear(6, 8), nn.ReLU()), nn.Sequential(nn.Linear(8, 5), nn.ReLU())],
                         out_shape=(5,), stage_shapes=((8,), (5,)))


def conv_encoder():
    """4-D stage outputs, then a flattening stage."""
    return StagedEncoder([nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU()),
                          nn.Sequential(nn.Conv2d(4, 5, 3, stride=2, padding=1), nn.ReLU()),
                          nn.Sequential(nn.Flatten(), nn.Linear(5 * 3 * 3, 7), nn.Tanh())],
                         out_shape=(7,), stage_shapes=((4, 6, 6), (5, 3, 3), (7,)))


ENCODERS = {"mlp": (mlp_encoder, (6,)), "conv": (conv_encoder, (2, 6, 6))}


def build(arch, m, enc, **params):
    factory, in_shape = ENCODERS[enc]
    width = factory().out_shape[0]
    tasks = [f"t{i}" for i in range(m)]
    model = arch(tasks, factory, lambda t: nn.Linear(width, OUT), **params)
    return model, tasks, torch.randn(4, *in_shape)

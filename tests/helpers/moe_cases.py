"""The tiny staged encoders, heads and builder that the tests of the mixture-of-experts
architectures share (MMoE, CGC, PLE, DSelect-k: test_mmoe.py, test_ple.py, test_dselect_k.py,
test_architecture_family_moe.py)."""
from torch import nn

from mtl_platform.contracts import StagedEncoder

OUT = 3  # head output width


def mlp_encoder(stage_shapes=True):
    """Three stages with 2-D outputs."""
    stages = [nn.Sequential(nn.Linear(6, 8), nn.Tanh()), nn.Sequential(nn.Linear(8, 8), nn.Tanh()),
              nn.Sequential(nn.Linear(8, 5), nn.Tanh())]
    return StagedEncoder(stages, out_shape=(5,), stage_shapes=((8,), (8,), (5,)) if stage_shapes else None)


def conv_encoder():
    """Two 4-D stages, then a flattening stage."""
    stages = [nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Tanh()),
              nn.Sequential(nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.Tanh()),
              nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 4, 6), nn.Tanh())]
    return StagedEncoder(stages, out_shape=(6,), stage_shapes=((4, 8, 8), (4, 4, 4), (6,)))


ENCODERS = {"mlp": (mlp_encoder, (6,), 5), "conv": (conv_encoder, (2, 8, 8), 6)}


def heads_for(width):
    return lambda task: nn.Linear(width, OUT)


def build(cls, params, m, enc="mlp"):
    factory, in_shape, width = ENCODERS[enc]
    tasks = [f"t{i}" for i in range(m)]
    return cls(tasks, factory, heads_for(width), **params), tasks, in_shape

"""TIRG: text-image residual gating over an image CNN and a text LSTM (Vo et al., CVPR 2019, §3).

φ_x = image CNN (a narrow ConvNet by default, or torchvision's ResNet-18 at a chosen width) then a
linear projection to ``dim``; φ_t = the last valid hidden state of an LSTM over word embeddings
(vocabulary built from the training texts, ``vocab``), then a linear projection. The composition
(§3.1, Eq. 1–3):

    f = w_g · gate(φ_x, φ_t) + w_r · res(φ_x, φ_t),
    gate = σ(MLP_g([φ_x, φ_t])) ⊙ φ_x,   res = MLP_r([φ_x, φ_t]),

w_g and w_r learned scalars (initialised to 1 and 10, as in the authors' release), each MLP
BatchNorm–ReLU–Linear on the concatenation (the residual one with a hidden layer of 2·dim).
Queries f and targets φ_x(target) are L2-normalised and multiplied by a learned scale
(initialised to 4, as released) before the loss (``losses``).

Every parameter is shared by both tasks (``clean`` and ``perturbed`` are the same loss on the
clean and on the perturbed query image; spec gradients.md §1.12: the released GH code applies GH
over all model parameters), so ``shared_parameters()`` is the whole model and no task owns any.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

ENCODERS = ("convnet", "resnet18")


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def convnet(size: int, width: float = 1.0) -> tuple[nn.Module, int]:
    """Three conv 3×3–BN–ReLU–max-pool 2 blocks of 16, 32, 64 channels (× ``width``), flattened:
    the flattened map keeps where objects are, which CSS texts name. Returns (module, features)."""
    c = [_scaled(16, width), _scaled(32, width), _scaled(64, width)]
    layers, cin, side = [], 3, size
    for cout in c:
        layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]
        cin, side = cout, side // 2
    if side < 1:
        raise ValueError(f"convnet needs images of at least 8×8 pixels, got {size}")
    return nn.Sequential(*layers, nn.Flatten()), cin * side * side


def image_trunk(name: str, size: int, width: float, pretrained: str | None) -> tuple[nn.Module, int]:
    """The image CNN before the projection: ``convnet`` or ``resnet18`` (the SDG domain's
    torchvision ResNet-18 with global average pooling; ``pretrained`` a local file)."""
    if name == "convnet":
        return convnet(size, width)
    from mtl_platform_plugins.domains.sdg.backbones import resnet18

    encoder = resnet18(3, size, width, pretrained, where="domain.pretrained")
    return encoder, encoder.out_shape[0]


class ImageEncoder(nn.Module):
    """φ_x: the CNN and a linear projection to ``dim``."""

    def __init__(self, name: str, size: int, dim: int, width: float = 1.0, pretrained: str | None = None):
        super().__init__()
        self.trunk, features = image_trunk(name, size, width, pretrained)
        self.project = nn.Linear(features, dim)

    def forward(self, images: Tensor) -> Tensor:
        return self.project(self.trunk(images))


class TextEncoder(nn.Module):
    """φ_t: word embeddings (index 0 = padding), an LSTM, its output at each text's last word,
    and a linear projection to ``dim``."""

    def __init__(self, vocab_size: int, word_dim: int, dim: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.lstm = nn.LSTM(word_dim, dim, batch_first=True)
        self.project = nn.Linear(dim, dim)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        out, _ = self.lstm(self.embed(tokens))                             # (B, L, dim)
        last = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, out.shape[-1])
        return self.project(out.gather(1, last).squeeze(1))


class Composer(nn.Module):
    """TIRG's composition f = w_g·σ(MLP_g([φ_x, φ_t]))⊙φ_x + w_r·MLP_r([φ_x, φ_t]) (Eq. 1–3)."""

    def __init__(self, dim: int, w_gate: float = 1.0, w_res: float = 10.0):
        super().__init__()
        self.gate = nn.Sequential(nn.BatchNorm1d(2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))
        self.res = nn.Sequential(nn.BatchNorm1d(2 * dim), nn.ReLU(), nn.Linear(2 * dim, 2 * dim), nn.ReLU(),
                                 nn.Linear(2 * dim, dim))
        self.w_gate = nn.Parameter(torch.tensor(float(w_gate)))
        self.w_res = nn.Parameter(torch.tensor(float(w_res)))

    def gating(self, img: Tensor, txt: Tensor) -> Tensor:
        """σ(MLP_g([φ_x, φ_t])), in (0, 1)."""
        return torch.sigmoid(self.gate(torch.cat([img, txt], 1)))

    def residual(self, img: Tensor, txt: Tensor) -> Tensor:
        return self.res(torch.cat([img, txt], 1))

    def forward(self, img: Tensor, txt: Tensor) -> Tensor:
        return self.w_gate * self.gating(img, txt) * img + self.w_res * self.residual(img, txt)


class Normalise(nn.Module):
    """x ↦ s·x/‖x‖ with a learned scale s (TIRG's normalisation layer, initial s = 4)."""

    def __init__(self, scale: float = 4.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(scale)))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * nn.functional.normalize(x, dim=1)


class TIRGModel(nn.Module):
    """The whole retrieval model; every parameter is shared by the ``clean`` and ``perturbed``
    tasks (module docstring). ``query(images, tokens, lengths)`` and ``target(images)`` give the
    normalised, scaled embeddings the loss compares."""

    has_rep = False
    rep = None

    def __init__(self, encoder: str, image_size: int, vocab_size: int, dim: int = 64, word_dim: int = 32,
                 width: float = 1.0, pretrained: str | None = None, tasks=("clean", "perturbed")):
        super().__init__()
        self.tasks = list(tasks)
        self.image = ImageEncoder(encoder, image_size, dim, width, pretrained)
        self.text = TextEncoder(vocab_size, word_dim, dim)
        self.compose = Composer(dim)
        self.normalise = Normalise()

    def query(self, images: Tensor, tokens: Tensor, lengths: Tensor) -> Tensor:
        return self.normalise(self.compose(self.image(images), self.text(tokens, lengths)))

    def target(self, images: Tensor) -> Tensor:
        return self.normalise(self.image(images))

    def forward(self, images: Tensor, tokens: Tensor, lengths: Tensor) -> Tensor:
        return self.query(images, tokens, lengths)

    # -- the parameter sets of an architecture (DESIGN.md §3.1) -----------------------------------
    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        return []

    def architecture_parameters(self) -> list[nn.Parameter]:
        return []

    def parameter_blocks(self) -> list[list[nn.Parameter]]:
        """The image CNN, the text encoder, the composition, the scale."""
        return [[p for p in m.parameters() if p.requires_grad]
                for m in (self.image, self.text, self.compose, self.normalise)]

    def parameter_counts(self) -> dict:
        count = sum(p.numel() for p in self.parameters())
        return {"total": count, "shared": count, "tasks": {t: 0 for t in self.tasks}, "architecture": 0,
                "image": sum(p.numel() for p in self.image.parameters()),
                "text": sum(p.numel() for p in self.text.parameters()),
                "compose": sum(p.numel() for p in self.compose.parameters()) + 1}

"""Zero-shot CLIP pseudo-labels for the target domain (spec gradients.md §3.1 and §3.6 item 4).

PGA's target loss L_T is cross-entropy on target samples labelled by the frozen CLIP itself:
the prompt "A photo of a {class}." for each class, p(c | x) = softmax_c(e^s cos(f_img(x),
f_txt(prompt_c))), and a sample keeps the label argmax_c p only if max_c p > τ (τ = 0.4 in the
released runs); otherwise its label is −1 and it is left out of the loss.

Offline (the default, as PGA's LA code and its released logs): :meth:`ZeroShotCLIP.offline` labels
the whole target training set once, before training, and caches the result (in memory, and in a
file when given one). Online (the DAPrompt/Dassl code's way): :meth:`ZeroShotCLIP.__call__`, the
``pseudo_labeller(model, xt)`` hook of the ``pseudo_label`` UDA method, labels each batch as it
comes. The probabilities are thresholded with :func:`confident_labels`.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mtl_platform.atomic import atomic_write

from .frozen import FrozenCLIP
from .images import IMAGENET_MEAN, IMAGENET_STD, ImageAdapter

TEMPLATE = "A photo of a {}."


def confident_labels(probabilities: Tensor, threshold: float) -> Tensor:
    """argmax_c p(c | x) where max_c p(c | x) > ``threshold``, −1 elsewhere (int64, no host sync)."""
    confidence, labels = probabilities.max(dim=-1)
    return torch.where(confidence > threshold, labels, torch.full_like(labels, -1))


class ZeroShotCLIP:
    """CLIP's zero-shot classifier with the prompt ``template`` (one ``{}`` for the class name).
    Images come in the data's normalisation (``input_mean``/``input_std``) and are adapted to
    CLIP's input as the prompt learner's encoder adapts them."""

    def __init__(self, clip: FrozenCLIP, class_names: Sequence[str], template: str = TEMPLATE,
                 input_mean: Sequence[float] = IMAGENET_MEAN, input_std: Sequence[float] = IMAGENET_STD):
        self.clip, self.class_names, self.template = clip, list(class_names), template
        self.adapt = ImageAdapter(clip.image_size, input_mean, input_std)
        self.input = (tuple(input_mean), tuple(input_std))
        ids = clip.tokenizer([template.format(name) for name in class_names], padding=True,
                             return_tensors="pt")["input_ids"]
        self._ids, self._text = ids, None
        self._offline: dict[int, tuple[Tensor, Tensor]] = {}

    @torch.no_grad()
    def text_features(self) -> Tensor:
        """Unit text features of the C template prompts (C, D), computed once."""
        device = self.clip.model.logit_scale.device
        if self._text is None or self._text.device != device:
            self._text = self.clip.text_features(self._ids.to(device))
        return self._text

    @torch.no_grad()
    def probabilities(self, images: Tensor) -> Tensor:
        """softmax_c(e^s cos(f_img(x), f_txt(template_c))) (B, C)."""
        self.adapt.to(images.device)
        features = self.clip.image_features(self.adapt(images))
        return (self.clip.logit_scale() * features @ self.text_features().t()).softmax(dim=-1)

    def __call__(self, model, images: Tensor) -> Tensor:
        """The ``pseudo_labeller(model, xt)`` hook (online use): zero-shot probabilities (B, C) of
        the target batch; ``model`` (the prompt learner being trained) is not used."""
        return self.probabilities(images)

    def fingerprint(self, count: int) -> str:
        """What the offline labels depend on: the weights' folder, the classes, the template, the
        input normalisation and the number of samples."""
        key = json.dumps([self.clip.path, self.class_names, self.template, self.input, count])
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def offline(self, dataset: Dataset, batch_size: int = 256, device: str | torch.device = "cpu",
                cache: str | Path | None = None) -> tuple[Tensor, Tensor]:
        """Zero-shot ``(labels, confidence)`` (N,) of every sample of ``dataset`` (items ``(image,
        …)``), in order: argmax and max of the probabilities, before any threshold (so τ can
        change without relabelling). Computed once per dataset and kept; with ``cache``, also
        written to that file and read back by a later run whose fingerprint matches."""
        if id(dataset) in self._offline:
            return self._offline[id(dataset)]
        stamp = self.fingerprint(len(dataset))
        path = Path(cache) if cache else None
        if path is not None and path.is_file():
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved.get("fingerprint") == stamp:
                self._offline[id(dataset)] = (saved["labels"], saved["confidence"])
                return self._offline[id(dataset)]
        labels, confidence = [], []
        for start in range(0, len(dataset), batch_size):
            images = torch.stack([dataset[i][0] for i in range(start, min(start + batch_size, len(dataset)))])
            top = self.probabilities(images.to(device)).max(dim=-1)
            confidence.append(top.values.cpu())
            labels.append(top.indices.cpu())
        result = (torch.cat(labels), torch.cat(confidence))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda fh: torch.save({"fingerprint": stamp, "labels": result[0],
                                                      "confidence": result[1]}, fh))
        self._offline[id(dataset)] = result
        return result


class PseudoLabelled(Dataset):
    """The target training set with its offline pseudo-labels: item i is ``(image_i, label_i)``,
    label −1 where the zero-shot confidence is not above ``threshold``."""

    def __init__(self, data: Dataset, labels: Tensor, confidence: Tensor, threshold: float):
        self.data = data
        self.labels = torch.where(confidence > threshold, labels, torch.full_like(labels, -1))

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.data[i][0], self.labels[i]

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.data, "set_epoch"):
            self.data.set_epoch(epoch)

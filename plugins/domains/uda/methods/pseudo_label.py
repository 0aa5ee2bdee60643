"""Pseudo-label UDA: PGA's objective on any backbone (Phan et al., "Enhancing Domain Adaptation
through Prompt Gradient Alignment", NeurIPS 2024; spec gradients.md §3.1, §3.2, §3.4).

PGA prompt-tunes a frozen CLIP with a shared prompt and one prompt per domain. Here the shared
generator G plays the shared prompt and each domain has its own linear head on it, the analogue
of the domain-specific prompts. The loss vector is ``[L_T, L_S]`` (target first: PGA's
coefficient 1; the source second: its trade-off λ), or ``[L_T, L_S1, …, L_Sn]`` for separate
multi-source (MPGA). The update rule — a weighting, or PGA/MPGA's closure — is not this file's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_platform.errors import UserError
from mtl_platform.params import Param, resolve_params

from ..streams import gather
from .contract import UDAMethod

TARGET = "target"
SOURCE = "source"
NO_LABELLER = ("domain.method.pseudo_labels: offline needs a pseudo-labeller, and the generator {} has none "
               "(a CLIP backbone's zero-shot classifier provides one); use pseudo_labels: online")


def confident_cross_entropy(logits: Tensor, labels: Tensor, confidence: Tensor, threshold: float) -> Tensor:
    """Mean cross-entropy over the samples whose pseudo-label confidence exceeds ``threshold``
    (strictly), the others excluded (spec §3.1: label −1). With no sample kept it is 0 (and so is
    its gradient): the count is clamped to 1, never read on the host, so no NaN and no sync."""
    keep = (confidence > threshold).to(logits.dtype)
    ce = F.cross_entropy(logits, labels.clamp_min(0), reduction="none")
    return (ce * keep).sum() / keep.sum().clamp_min(1.0)


class TargetHead(nn.Linear):
    """The target's linear head; with offline pseudo-labels it also holds them, one per target
    training image, as buffers, so a resumed run reads the very labels it started with."""

    def __init__(self, features: int, classes: int, offline_size: int | None = None):
        super().__init__(features, classes)
        if offline_size is not None:
            self.register_buffer("offline_labels", torch.zeros(offline_size, dtype=torch.long))
            self.register_buffer("offline_confidence", torch.zeros(offline_size))
            self.register_buffer("offline_ready", torch.zeros((), dtype=torch.bool))


class PseudoLabel(UDAMethod):
    """PGA's two objectives (spec gradients.md §3.1, without CLIP):

    * ``L_source`` = CE(H_S(G(x_s)), y_s) on the labelled source, through the source head H_S
      (separate multi-source: one term ``source_<domain>`` per source, each with its own head);
    * ``L_target`` = CE(H_T(G(x_t)), ŷ_t) on the target samples whose pseudo-label confidence
      exceeds τ (``threshold``, default 0.4, the released runs' value), mean over the kept
      samples, 0 when none is kept.

    Pseudo-labels ŷ_t and their confidence:
    * ``online`` (the default here): argmax and max of the softmax of the source head — the mean
      of the source heads' softmaxes with separate sources — on the target batch's features,
      detached, computed once per batch (re-evaluations of the same batch by a closure method
      reuse them, so every evaluation optimises the same L_T). The paper instead labels the
      target once, offline, with zero-shot CLIP ("A photo of a {class}"); digits have no
      zero-shot model, hence online here.
    * ``offline``: computed once before the first update for every target training image by
      ``pseudo_labeller(model, x_t)`` → class probabilities (B, K), in eval mode without
      gradients, and kept in the target head's buffers. The default hook asks the generator:
      ``model.encoder.pseudo_labeller(x_t)`` (a CLIP backbone's zero-shot classifier); a plugin
      may instead subclass and override ``pseudo_labeller(model, x_t)`` (or assign it). With
      neither the run is refused while the model is built.

    Prediction (spec §3.5 "Inference"): the target head's logits (``predict: target``) or the
    log of the mean of the target and source heads' softmaxes (``ensemble``).
    """

    name = "pseudo_label"
    aligns = False
    separate_sources = True
    params = (
        Param("threshold", float, 0.4, "τ: a target sample keeps its pseudo-label when its confidence (max "
              "softmax probability) exceeds it", bounds="[0, 1]"),
        Param("pseudo_labels", str, "online", "online: from the source head on each target batch; offline: once "
              "before training, from pseudo_labeller (a CLIP backbone's zero-shot labels)",
              choices=("online", "offline")),
        Param("predict", str, "target", "evaluation: the target head, or the ensemble of the target and source "
              "heads' softmaxes", choices=("target", "ensemble")),
    )
    target_size: int | None = None  # the target's training images (set by the domain before the heads are built)

    def __init__(self, seed: int = 0, **params):
        super().__init__(seed, **resolve_params(self.declared_params(), params, "domain.method"))
        self._batch: tuple | None = None  # (x_t, labels, confidence) of the batch last labelled online
        self._offline_checked = False

    # -- the domain's hooks -------------------------------------------------------------------
    def loss_terms(self, sources: list[str], separate: bool) -> list[str]:
        return [TARGET] + ([f"{SOURCE}_{s}" for s in sources] if separate else [SOURCE])

    @property
    def needs_target_index(self) -> bool:
        return self.config["pseudo_labels"] == "offline"

    def task_head(self, task: str, features: int, num_classes: int) -> nn.Module:
        if task == TARGET:
            return TargetHead(features, num_classes, self.target_size if self.needs_target_index else None)
        return nn.Linear(features, num_classes)

    # -- losses --------------------------------------------------------------------------------
    def losses(self, model, xs, ys, xt, progress, tasks, target_index=None):
        pairs = list(zip(xs, ys)) if isinstance(xs, (list, tuple)) else [(xs, ys)]
        names = [t for t in tasks if t != TARGET]
        sizes = [len(x) for x, _ in pairs]
        f = model.encoder(torch.cat([*(x for x, _ in pairs), xt]))
        fs, ft = f[: sum(sizes)].split(sizes), f[sum(sizes):]
        out = {}
        if TARGET in tasks:
            labels, confidence = self.target_labels(model, ft, xt, target_index, names)
            out[TARGET] = confident_cross_entropy(model.heads[TARGET](ft), labels, confidence,
                                                  self.config["threshold"])
        for name, (_, y), features in zip(names, pairs, fs):
            out[name] = F.cross_entropy(model.heads[name](features), y)
        return out

    def target_labels(self, model, ft: Tensor, xt: Tensor, target_index, sources: list[str]):
        """(pseudo-labels, confidence) of the target batch (class docstring)."""
        if self.needs_target_index:
            head = model.heads[TARGET]
            return head.offline_labels[target_index], head.offline_confidence[target_index]
        if self._batch is not None and self._batch[0] is xt:  # the same batch again (a closure's re-evaluation)
            return self._batch[1], self._batch[2]
        with torch.no_grad():
            probs = torch.stack([model.heads[s](ft.detach()).softmax(1) for s in sources]).mean(0)
            confidence, labels = probs.max(1)
        self._batch = (xt, labels, confidence)
        return labels, confidence

    # -- offline pseudo-labels -----------------------------------------------------------------
    def pseudo_labeller(self, model: nn.Module, xt: Tensor) -> Tensor:
        """Class probabilities (B, K) of target images for offline pseudo-labels: the hook a
        zero-shot model plugs into. Default: the generator's own ``pseudo_labeller(x_t)``."""
        labeller = getattr(model.encoder, "pseudo_labeller", None)
        if labeller is None:
            raise UserError(NO_LABELLER.format(type(model.encoder).__name__))
        return labeller(xt)

    def check_encoder(self, encoder: nn.Module) -> None:
        """Offline with the default hook needs a generator that labels (refused while the model is built)."""
        if self.needs_target_index and type(self).pseudo_labeller is DEFAULT_LABELLER \
                and not hasattr(encoder, "pseudo_labeller"):
            raise UserError(NO_LABELLER.format(type(encoder).__name__))

    def before_step(self, model: nn.Module, target) -> None:
        """Offline: label every target training image once, before the first update (a resumed
        run finds them in the checkpoint; one host read per run, not per batch)."""
        if self._offline_checked or not self.needs_target_index:
            return
        self._offline_checked = True
        head = model.heads[TARGET]
        if bool(head.offline_ready):
            return
        was_training = model.training
        model.eval()
        device = head.offline_labels.device
        if hasattr(target, "set_epoch"):
            target.set_epoch(0)
        try:
            with torch.no_grad():
                for index in torch.arange(len(target)).split(256):
                    x, _ = gather(target, index)  # the target's labels are never read
                    probs = self.pseudo_labeller(model, x.to(device))
                    confidence, labels = probs.max(1)
                    head.offline_labels[index.to(device)] = labels
                    head.offline_confidence[index.to(device)] = confidence.to(head.offline_confidence.dtype)
                head.offline_ready.fill_(True)
        finally:
            model.train(was_training)

    # -- prediction -----------------------------------------------------------------------------
    def predict(self, model: nn.Module, x: Tensor) -> Tensor:
        f = model.encoder(x)
        if self.config["predict"] == TARGET:
            return model.heads[TARGET](f)
        probs = torch.stack([head(f).softmax(1) for head in model.heads.values()]).mean(0)
        return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()


DEFAULT_LABELLER = PseudoLabel.pseudo_labeller  # the generator's hook; anything else is a plugin's own labeller

"""Composed image retrieval under attack as multi-task learning (issue 22; spec gradients.md
§1.12, "Multi-modal interactive retrieval"; docs/retrieval.md).

A query is an image and a modification text, the target an image. The model is TIRG
(``model.TIRGModel``: image CNN, text LSTM, gated residual composition); the loss TIRG's batch
classification (or soft-triplet) loss (``losses``). The two tasks the weighting sees:

- ``clean``: the loss of the batch with the clean query images;
- ``perturbed``: the same loss with the query images perturbed by ``perturbation`` (``gaussian``,
  the released AT-TIRG loop's clip(x + 0.3·N(0, I), 0, 1); ``fgsm``; ``pgd``), computed inside
  the update protocol against the current model (its normalisation statistics left as they
  were, no parameter gradient written).

Both tasks share every parameter, and the gradient space is the whole model (the released GH
code applies GH over all parameters, spec §1.12). ``domain.tasks: [clean]`` trains the clean
loss alone (TIRG without adversarial training; no perturbation is computed); it is also the
single-task reference (``stl_domain_config``).

Evaluated: ``clean`` and one task per entry of ``eval_attacks`` (named by its ``label`` or its
attack's name): R@1, R@5, R@10 over the whole split (``metrics``), the query images perturbed by
that attack against the model in evaluation mode (the attack ascends the batch loss of the
evaluation batch, targets embedded once per evaluation).
"""
from __future__ import annotations

import torch
from torch import nn

from mtl_platform.batches import batch_indices, to_device
from mtl_platform.contracts import Domain
from mtl_platform.contracts.step import StepOutput, detached, task_weights
from mtl_platform.contracts.task import Task
from mtl_platform.errors import UserError
from mtl_platform.gradients.perturb import frozen_running_stats
from mtl_platform.params import Param

from .data.contract import RetrievalData
from .losses import LOSSES, retrieval_loss
from .metrics import KS, RecallTask, recall_hits
from .model import ENCODERS, TIRGModel
from .perturbations import Perturbation, build_perturbation
from .vocab import Vocabulary

CLEAN, PERTURBED = "clean", "perturbed"
DEFAULT_EVAL_ATTACKS = [{"name": "gaussian", "sigma": 0.3}, {"name": "fgsm", "eps": 8 / 255}]


class LossTerm(Task):
    """A loss term the weighting sees (computed by the domain, not by ``loss``)."""


class Retrieval(Domain):
    """Text-modified image retrieval (TIRG) with a clean and a perturbed loss term (module docstring)."""

    name = "retrieval"
    params = (
        Param("data", dict, "scenes", "the images and queries: scenes (synthetic, offline) or css (the TIRG "
              "release's files)", kind="retrieval.data"),
        Param("encoder", str, "convnet", "image CNN: convnet (small) or resnet18 (torchvision's, at `width`)",
              choices=ENCODERS),
        Param("width", float, 1.0, "channel multiplier of the image CNN (resnet18: 1.0 is the published one)",
              bounds="(0, 16]"),
        Param("pretrained", str, None, "local weights file of the resnet18 (torchvision key names; null: random "
              "init; nothing is downloaded)", optional=True),
        Param("embed_dim", int, 64, "embedding size of images, texts and compositions (TIRG: 512)",
              bounds="[2, 4096]"),
        Param("word_dim", int, 32, "word-embedding size of the text LSTM (TIRG: 512)", bounds="[1, 4096]"),
        Param("loss", str, "batch_classification", "retrieval loss: batch_classification or soft_triplet",
              choices=LOSSES),
        Param("perturbation", dict, {"name": "gaussian", "sigma": 0.3}, "the perturbed task's query "
              "perturbation: gaussian (sigma), fgsm (eps), pgd (eps, steps, step_size, random_start)",
              kind="retrieval.perturbation"),
        Param("eval_attacks", list, DEFAULT_EVAL_ATTACKS, "query perturbations evaluated besides clean queries, "
              "each {name: gaussian|fgsm|pgd, <its params>, label: <task name, default the attack's>}",
              item=dict),
        Param("batch_size", int, 64, "training queries per batch (at least 2: the loss ranks the batch)",
              bounds="[2, inf)"),
        Param("eval_batch_size", int, 256, "queries per evaluation batch", bounds="[1, inf)"),
    )

    def __init__(self, seed: int = 0, **params):
        data = params.get("data")
        if not isinstance(data, RetrievalData):
            raise TypeError("Retrieval(data=...) takes a built retrieval.data component (experiment.build_domain "
                            "builds it)")
        self.data = data
        self.values = {p.name: params.get(p.name, p.default) for p in self.params if p.name != "data"}
        self.perturbation: Perturbation = build_perturbation(self.values["perturbation"], "domain.perturbation")
        self.attacks: dict[str, Perturbation] = {}
        for i, given in enumerate(self.values["eval_attacks"] or []):
            where = f"domain.eval_attacks[{i}]"
            given = dict(given) if isinstance(given, dict) else given
            label = given.pop("label", None) if isinstance(given, dict) else None
            attack = build_perturbation(given, where)
            label = str(label) if label is not None else attack.name
            if label == CLEAN or label in self.attacks:
                raise UserError(f"{where}: a second evaluated task named {label!r}; give it its own "
                                f"label, e.g. {{name: {attack.name}, ..., label: {attack.name}_{i}}}")
            self.attacks[label] = attack
        self.loss_fn = retrieval_loss(self.values["loss"])
        super().__init__(seed, **params)
        self.recall = {name: RecallTask(name) for name in [CLEAN, *self.attacks]}
        self.vocab: Vocabulary | None = None

    @staticmethod
    def stl_domain_config(section: dict) -> dict:
        """The single-task reference of every evaluated task is TIRG trained on clean queries alone."""
        return dict(section, tasks=[CLEAN])

    # -- tasks ---------------------------------------------------------------------------------
    def build_tasks(self):
        return [LossTerm(CLEAN), LossTerm(PERTURBED)]

    @property
    def eval_tasks(self):
        return list(self.recall)

    def task(self, name):
        return self.recall[name] if name in self.recall else super().task(name)

    @property
    def trains_perturbed(self) -> bool:
        return PERTURBED in self.task_names

    def label_prefix(self) -> str:
        loss = "" if self.values["loss"] == "batch_classification" else f" · {self.values['loss']}"
        if not self.trains_perturbed:
            return "clean only" + loss
        both = "clean + " if CLEAN in self.task_names else ""
        return f"{both}perturbed ({self.perturbation.describe()}){loss}"

    # -- data ------------------------------------------------------------------------------------
    def load_split(self, split):
        data = self.data.load(split)
        if split != "train":
            self.dataset("train")  # the vocabulary comes from the training texts
        else:
            self.vocab = Vocabulary(data.texts)
        data.tokens, data.lengths = self.vocab.encode(data.texts)
        if len(data) == 0:
            raise UserError(f"domain.data: the {split!r} split has no query")
        return data

    # -- the model -------------------------------------------------------------------------------
    def build_model(self) -> TIRGModel:
        train = self.dataset("train")
        v = self.values
        return TIRGModel(v["encoder"], train.images.shape[-1], len(self.vocab), v["embed_dim"], v["word_dim"],
                         v["width"], v["pretrained"], self.task_names)

    def compose(self, architecture, weighting):
        name = getattr(architecture, "architecture_name", "hps")
        if name != "hps":
            raise UserError(f"architecture {name!r}: the retrieval domain trains one TIRG model whose every "
                            f"parameter both tasks share (hard parameter sharing, no heads); use architecture: hps")
        return self.build_model()

    def encoder_factory(self):
        raise UserError("domain retrieval: the TIRG model is built by the domain (compose), not from an encoder")

    def head_factory(self, task):
        raise UserError("domain retrieval: the TIRG model is built by the domain (compose), not from heads")

    # -- the update protocol ---------------------------------------------------------------------
    def _loss(self, model: TIRGModel, images, text, targets):
        return self.loss_fn(model.normalise(model.compose(model.image(images), text)), targets)

    def perturb(self, batch, model: TIRGModel, attack: Perturbation | None = None):
        """The batch's query images perturbed by ``attack`` (default: the training perturbation)
        against the current model; the model's normalisation statistics are left as they were."""
        attack = attack or self.perturbation
        images, tokens, lengths, targets = batch
        if not attack.needs_gradient:
            return attack(images, None)
        with frozen_running_stats(model):
            with torch.no_grad():
                text, target = model.text(tokens, lengths), model.target(targets)
            return attack(images, lambda x: self._loss(model, x, text, target))

    def task_losses(self, batch, perturbed, model: TIRGModel) -> dict:
        """``{clean, perturbed}`` (those trained) for the batch, ``perturbed`` the perturbed query images."""
        images, tokens, lengths, targets = batch
        text, target = model.text(tokens, lengths), model.target(targets)
        out = {}
        if CLEAN in self.task_names:
            out[CLEAN] = self._loss(model, images, text, target)
        if self.trains_perturbed:
            out[PERTURBED] = self._loss(model, perturbed, text, target)
        return out

    def losses(self, batch, model):
        return self.task_losses(batch, self.perturb(batch, model) if self.trains_perturbed else None, model)

    def present(self, batch):
        return None

    def train_step(self, batch, model, engine, optimizers) -> StepOutput:
        """Perturb the queries against the current model, then the default protocol over both
        losses (the whole model is the gradient space); a weighting's re-evaluation closure
        reuses this step's perturbed images."""
        perturbed = self.perturb(batch, model) if self.trains_perturbed else None
        losses = self.task_losses(batch, perturbed, model)
        answer = engine.backward(losses)
        engine.step(optimizers, closure=lambda: self.task_losses(batch, perturbed, model))
        return StepOutput(detached(losses), task_weights(answer, len(engine.tasks)))

    # -- evaluation ------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str):
        """R@1/5/10 of clean and of attacked queries over the whole split (``metrics``); the gallery
        (every image of the split) is embedded once, hits summed on the device. Random attacks
        (Gaussian noise, PGD's random start) draw from a stream seeded by the domain's seed, so an
        evaluation repeats exactly and leaves the training's random stream where it was."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        data = self.dataset(split)
        size = self.config["eval_batch_size"]
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            return self._evaluate(model, data, size, device, was_training)

    def _evaluate(self, model, data, size, device, was_training):
        try:
            gallery = torch.cat([model.target(to_device(data.float_images(idx), device))
                                 for idx in batch_indices(len(data.images), size, shuffle=False)])
            scenes = data.scenes.to(device)
            hits = {name: torch.zeros(len(KS), dtype=torch.long, device=device) for name in self.recall}
            for idx in batch_indices(len(data), size, shuffle=False):
                batch = to_device(data.get_batch(idx), device)
                images, tokens, lengths, _ = batch
                source, target = data.source[idx].to(device), data.target[idx].to(device)
                text, goal = model.text(tokens, lengths), gallery[target]
                for name in self.recall:
                    x = images if name == CLEAN else self.attacks[name](
                        images, lambda z: self._loss(model, z, text, goal))
                    queries = model.normalise(model.compose(model.image(x), text))
                    hits[name] += recall_hits(queries, gallery, scenes, source, scenes[target])
        finally:
            model.train(was_training)
        count = torch.tensor(len(data), device=device)
        return {name: self.recall[name].finalize(self.recall[name].metric_sums(hits[name], count))
                for name in self.recall}

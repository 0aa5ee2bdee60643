"""Unsupervised domain adaptation as a task domain (DESIGN.md §3.3; spec gradients.md §1)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from mtl_platform.batches import Batches, batch_indices, to_device
from mtl_platform.contracts import Domain
from mtl_platform.contracts.closure import LossClosure
from mtl_platform.contracts.step import StepOutput, detached, task_weights
from mtl_platform.errors import UserError
from mtl_platform.params import Param, section

from .clip.backbone import CLIP_PARAMS
from .contract import UDAData, source_list
from .methods.contract import UDAMethod
from .streams import Merged, MultiSourceStreams, PairedStreams
from .tasks import AlignmentTask, TargetClassification

BACKBONES = ("lenet", "mcd_digits", "resnet50", "resnet101", "vit_b_16", "clip")
MULTI_SOURCE = ("combined", "separate")
EVAL_TASK = "classification"


class Labelled(Dataset):
    """``(image, label)`` samples as ``(image, {task: label})``, the form ``evaluate`` reads."""

    def __init__(self, data: Dataset, task: str):
        self.data, self.task = data, task

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        x, y = self.data[i]
        return x, {self.task: y}


class UDA(Domain):
    """A labelled source and an unlabelled target (``data``: a ``uda.data`` family with its
    ``source`` and ``target``), adapted by ``method`` (a ``uda.method``: ``dann``, ``cdan``,
    ``mcd``, ``mdd``, ``dwl``, ``pseudo_label``, ``source_only``, or a plugin's). The loss terms
    are ``[alignment, classification]`` — the GH paper's L1 and L2 (spec gradients.md §1.7), in
    that order, so GH++ up-weights the alignment unless its ``priority`` says otherwise — and any
    weighting harmonises them over the method's gradient space (its ``gradient_space``: the
    generator G, ``hps``'s shared encoder, or the base network G + classifier; never the
    discriminator), which every call of the engine receives, in the default protocol and in the
    methods' own steps. Only target classification is evaluated: ``test`` is the target's test
    data, ``val`` the source's (no target label is used for selection).

    Training batches pair ``batch_size`` source and target samples from two endless streams,
    ``iterations`` per epoch (default: one pass over the source). The methods' schedules
    (the gradient-reversal coefficient) follow progress = iteration / ``schedule_iterations``.
    The report's STL baseline of ``classification`` is source-only training (the same config
    without the alignment task), so Δ is each method's gain over source only.

    Multi-source UDA (spec gradients.md §3.4): ``data.source`` may list several domains.
    ``multi_source: combined`` ("source-combined") merges them into one labelled source, so
    every method runs unchanged; ``separate`` keeps one labelled stream per source, a batch
    holding ``batch_size`` samples of each source and of the target, for a method that takes
    them apart (``separate_sources``, e.g. ``pseudo_label``); the others are refused. A method
    may name its own loss terms (``loss_terms``, one head each; ``pseudo_label``: ``[target,
    source…]``) and own its prediction (``predict(model, x)``; default the classification
    head); the evaluated task is ``classification`` (target accuracy) either way.
    """

    name = "uda"
    params = (
        Param("data", dict, "digits", "the domains: digits (mnist, usps, svhn, uci), office31, office_home, visda, "
              "domainnet, with source and target", kind="uda.data"),
        Param("method", dict, "dann", "the adaptation method: dann, cdan, mcd, mdd, dwl, pseudo_label, source_only, "
              "or a plugin's", kind="uda.method"),
        Param("backbone", str, "lenet", "the generator's backbone", choices=BACKBONES),
        Param("bottleneck", int, 256, "bottleneck width after a ResNet or the ViT, 0 for none (LeNet's features "
              "are 500-d)", bounds="[0, inf)"),
        Param("pretrained", str, None, "ResNet weights: a local file or a torchvision weights name such as "
              "ResNet50_Weights.IMAGENET1K_V1; vit_b_16: a local file only (null: random init)", optional=True),
        section("vit", "the vit_b_16 backbone's size (defaults: ViT-B/16; smaller for tests)",
                Param("width", int, 768, "hidden size", bounds="[1, inf)"),
                Param("layers", int, 12, "transformer blocks", bounds="[1, inf)"),
                Param("heads", int, 12, "attention heads (must divide width)", bounds="[1, inf)"),
                Param("mlp", int, 3072, "MLP hidden size", bounds="[1, inf)"),
                Param("patch", int, 16, "patch side (must divide the image side)", bounds="[1, inf)")),
        Param("iterations", int, None, "training iterations per epoch (default: one pass over the source)",
              optional=True, bounds="[1, inf)"),
        Param("schedule_iterations", int, 10000, "iterations over which the gradient-reversal coefficient ramps "
              "up (CDAN's code: 10,000)", bounds="[1, inf)"),
        Param("batch_size", int, 32, "source and target samples per training batch (each; per source when "
              "multi_source is separate)", bounds="[1, inf)"),
        Param("multi_source", str, "combined", "with several data.source: combined (merged into one labelled "
              "source, 'source-combined') or separate (one stream per source, for methods that take them apart)",
              choices=MULTI_SOURCE),
        Param("eval_batch_size", int, 256, "batch size for evaluation", bounds="[1, inf)"),
        *CLIP_PARAMS,
    )

    def __init__(self, seed: int = 0, **params):
        data, method = params.get("data"), params.get("method")
        if not isinstance(data, UDAData) or not isinstance(method, UDAMethod):
            raise TypeError("UDA(data=..., method=...) takes built uda.data and uda.method components "
                            "(experiment.build_domain builds them)")
        self.data, self.method = data, method
        self.sources = source_list(data.config["source"])
        self.separate = params.get("multi_source", "combined") == "separate" and len(self.sources) > 1
        if self.separate and not getattr(method, "separate_sources", False):
            raise UserError(f"domain.multi_source: separate needs a method that takes one stream per source "
                            f"(pseudo_label); {method.name} takes one labelled source: use multi_source: combined")
        self.eval_task = TargetClassification(EVAL_TASK, data.num_classes)
        super().__init__(seed, **params)
        terms = self.method_terms()
        if terms is not None and params.get("tasks") and list(params["tasks"]) != terms:
            raise UserError(f"domain.tasks: {method.name} trains all of its loss terms ({', '.join(terms)}); "
                            "leave domain.tasks unset")

    @staticmethod
    def stl_domain_config(section: dict) -> dict:
        """The STL run of ``classification`` is source only whatever the method (on the merged
        sources when there are several): name it so, so every method shares one cached
        source-only baseline."""
        return dict(section, method={"name": "source_only"}, multi_source="combined")

    def method_terms(self) -> list[str] | None:
        """The method's own loss terms (``loss_terms``), or None for the alignment/classification pair."""
        if not hasattr(self.method, "loss_terms"):
            return None
        return list(self.method.loss_terms(self.sources, self.separate))

    def build_tasks(self):
        terms = self.method_terms()
        if terms is not None:
            return [TargetClassification(name, self.data.num_classes) for name in terms]
        tasks = [TargetClassification(EVAL_TASK, self.data.num_classes)]
        return ([AlignmentTask("alignment")] if self.method.aligns else []) + tasks

    def task(self, name):
        if name == EVAL_TASK and name not in self.task_names:
            return self.eval_task
        return super().task(name)

    @property
    def adapting(self) -> bool:
        """Whether the method trains (not the source-only STL run of ``classification``)."""
        return self.method_terms() is not None or "alignment" in self.task_names

    def label_prefix(self) -> str:
        """The method, so the report tells ``dann · hps + gh`` from ``cdan · hps + gh``, and the
        gradient space where the config overrides the method's default (``cdan (generator)``)."""
        space = self.method.config.get("gradient_space")
        default = next((p.default for p in type(self.method).declared_params() if p.name == "gradient_space"), space)
        label = self.method.name + (f" ({space})" if space != default else "")
        return label + (" · separate sources" if self.separate else "")

    @property
    def eval_tasks(self):
        return [EVAL_TASK]

    def source_data(self, split: str) -> Dataset:
        """The sources' ``split``: the one source's, or the sources merged in the config's order."""
        parts = [self.data.load(s, split) for s in self.sources]
        return parts[0] if len(parts) == 1 else Merged(parts)

    def load_split(self, split):
        if split == "train":
            return self.source_data("train")
        if split == "val":  # source held-out data: model selection never sees target labels
            return Labelled(self.source_data("test"), EVAL_TASK)
        return Labelled(self.data.load(self.data.config["target"], "test"), EVAL_TASK)

    def source_parts(self) -> list[Dataset]:
        """Each source's training data (``separate``)."""
        train = self.dataset("train")
        return train.parts if isinstance(train, Merged) else [train]

    def target_train(self) -> Dataset:
        if not hasattr(self, "_target"):
            self._target = self.data.load(self.data.config["target"], "train")
        return self._target

    def prepare(self) -> None:
        super().prepare()
        self.method.target_size = len(self.target_train())

    def iterations(self) -> int:
        """``iterations``, or one pass over the (merged) source; over the longest source when separate."""
        c = self.config
        longest = max(len(d) for d in self.source_parts()) if self.separate else len(self.dataset("train"))
        return c["iterations"] or math.ceil(longest / c["batch_size"])

    def loaders(self, split, epoch=0, start=0):
        if split != "train":
            data = self.dataset(split)
            return Batches(data, batch_indices(len(data), self.config["eval_batch_size"], shuffle=False), start=start)
        args = (self.target_train(), self.config["batch_size"], self.iterations(), epoch, start, self.seed,
                self.config["schedule_iterations"], getattr(self.method, "needs_target_index", False))
        if self.separate:
            return MultiSourceStreams(self.source_parts(), *args)
        return PairedStreams(self.dataset("train"), *args)

    def split_train(self, fraction, seed):
        raise UserError("domain uda: architecture search stages are not supported (no split of paired streams); "
                        "use a fixed architecture such as hps")

    @staticmethod
    def _check(model):
        if not (hasattr(model, "encoder") and hasattr(model, "heads")):
            raise UserError(f"domain uda: the architecture must be hps (a generator shared by both tasks and one "
                            f"head per task); got {type(model).__name__}")

    def losses(self, batch, model):
        self._check(model)
        xs, ys, xt, progress = batch[:4]
        if not self.adapting:  # source only: the STL baseline of classification
            return {"classification": F.cross_entropy(model.heads["classification"](model.encoder(xs)), ys)}
        extra = {"target_index": batch[4]} if len(batch) > 4 else {}  # offline pseudo-labels
        return self.method.losses(model, xs, ys, xt, progress, self.task_names, **extra)

    def parameter_groups(self, model):
        """``head``: the ResNet's or ViT's bottleneck (the generator's last stage), the classifier
        and the alignment head — CDAN's and GH's code train them at 10× the backbone's lr."""
        self._check(model)
        head = list(model.heads.parameters())
        if self.config["backbone"].startswith(("resnet", "vit")):
            head += list(model.encoder.stages[-1].parameters())
        return {"head": head}

    def check_optimizers(self, optimizers):
        if self.adapting:
            self.method.check_optimizers(optimizers)

    def check_weighting(self, weighting):
        if self.adapting:
            self.method.check_weighting(weighting)

    def engine_params(self, model) -> list | None:
        """The method's gradient space as the engine's ``params``: None where it is exactly the
        model's shared parameters (G), the engine's default space — the same parameters, on the
        engine's one-VJP path, bit for bit as before the option existed."""
        space = self.method.gradient_space(model)
        shared = [p for p in model.shared_parameters() if p.requires_grad]
        return None if [id(p) for p in space] == [id(p) for p in shared] else space

    def check_closure(self, method):
        """A closure method (SAM, PGA, MPGA) takes the place of the default protocol: every method
        whose update is one engine backward over its gradient space (DANN, CDAN, MDD, GVB, SSRT,
        pseudo_label, source only) takes one; MCD's and DWL's own multi-step protocols do not."""
        if self.adapting and hasattr(self.method, "train_step"):
            raise UserError(f"closure: {method.name} replaces the ordinary update; method {self.method.name!r} has "
                            f"its own multi-step protocol, which takes no closure method (leave closure null)")

    def closure(self, batch, model):
        device = next(model.parameters()).device
        params = self.engine_params(model) if self.adapting else None
        return LossClosure(lambda: self.losses(batch, model), device, params=params)

    def train_step(self, batch, model, engine, optimizers):
        """The default protocol over the method's gradient space, or the method's own (MCD's
        steps A, B, C), which passes its gradient space itself."""
        if not self.adapting:
            return super().train_step(batch, model, engine, optimizers)
        self._check(model)
        if hasattr(self.method, "before_step"):  # e.g. offline pseudo-labels, once, before the first update
            self.method.before_step(model, self.target_train())
        if hasattr(self.method, "train_step"):
            self.method.epoch_iterations = self.iterations()
            return self.method.train_step(batch, model, engine, optimizers, self.task_names)
        losses = self.losses(batch, model)
        answer = engine.backward(losses, params=self.engine_params(model))
        engine.step(optimizers, closure=lambda: self.losses(batch, model))
        return StepOutput(detached(losses), task_weights(answer, len(engine.tasks)))

    @torch.no_grad()
    def evaluate(self, model, split):
        self._check(model)
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        task = self.task(EVAL_TASK)
        sums = {}
        for batch in self.loaders(split):
            x, y = to_device(batch, device)
            for key, value in task.metric_sums(self.predict(model, x), y[EVAL_TASK]).items():
                sums[key] = sums[key] + value if key in sums else value
        model.train(was_training)
        return {EVAL_TASK: task.finalize(sums)}

    def predict(self, model, x):
        """Target logits: the method's ``predict(model, x)`` where it has one (``pseudo_label``'s
        target head or ensemble), else the classification head. Source only (the STL run)
        always reads the classification head."""
        if self.adapting and hasattr(self.method, "predict"):
            return self.method.predict(model, x)
        return model.heads[EVAL_TASK](model.encoder(x))

    def encoder_factory(self):
        from .backbones import lenet_generator, mcd_digits_generator, resnet_generator

        c = self.config
        if c["backbone"] == "clip":
            encoder = self.clip_backbone().encoder()
            # the zero-shot classifier is the generator's pseudo-labeller (pseudo_label's hook):
            # "A photo of a {class}." with the frozen CLIP (spec gradients.md §3.1)
            encoder.pseudo_labeller = self.clip_backbone().zero_shot().probabilities
            return encoder
        channels, size, _ = self.data.image_shape
        digits = {"lenet": lenet_generator, "mcd_digits": mcd_digits_generator}
        if c["backbone"] in digits:
            if c["pretrained"]:
                raise UserError(f"domain.pretrained: {c['backbone']} has no pretrained weights; "
                                "use backbone resnet50/resnet101")
            return digits[c["backbone"]](channels, size)
        if c["backbone"] == "vit_b_16":
            from .vit import vit_generator

            return vit_generator(channels, size, c["bottleneck"], c["pretrained"], **c["vit"])
        return resnet_generator(int(c["backbone"][len("resnet"):]), size, c["bottleneck"], c["pretrained"])

    def clip_backbone(self):
        """``backbone: clip``: PGA's prompt learner (``clip/``), its frozen CLIP read once per domain."""
        if not hasattr(self, "_clip_backbone"):
            from .clip.backbone import CLIPBackbone

            self._clip_backbone = CLIPBackbone(self.config, self.data.num_classes,
                                               getattr(self.data, "class_names", None))
        return self._clip_backbone

    def head_factory(self, task):
        if self.config["backbone"] == "clip":
            if task == "alignment":
                raise UserError(f"domain.backbone: clip gives each task its domain's prompt and has no feature "
                                f"vector for method {self.method.name}'s alignment head; use source_only or a "
                                "method whose tasks are domains (pseudo_label)")
            return self.clip_backbone().head(task)
        if not hasattr(self, "_features"):
            probe = self.encoder_factory()
            if hasattr(self.method, "check_encoder"):  # refused before any run directory exists
                self.method.check_encoder(probe)
            self._features = probe.out_shape[0]
        features = self._features
        if self.method_terms() is not None:
            return self.method.task_head(task, features, self.data.num_classes)
        if task == "classification":
            return self.method.classification_head(features, self.data.num_classes)
        return self.method.alignment_head(features, self.data.num_classes)

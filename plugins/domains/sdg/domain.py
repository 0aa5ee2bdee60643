"""Single-domain generalisation as a task domain (DESIGN.md §3.6; spec gradients.md §2).

Train on one labelled source domain, test on domains never seen. The loss terms the weighting
sees are K synthesised domains of each source batch (``synthesis``: K independent RandAugment
draws, rotations or brightness changes of the same images), or the real source domains
(``synthesis: sources``, multi-domain generalisation), so every weighting of the platform is an
SDG method; DGE (Zhang, Li, Shin, ACM MM 2024) is ``equilibrium`` with ``update: sequential``
(its paper form) or ``sum``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.utils.data import ConcatDataset, Dataset

from mtl_platform.batches import Batches, batch_indices, epoch_order, mix_seed, to_device
from mtl_platform.contracts import Domain
from mtl_platform.contracts.closure import LossClosure
from mtl_platform.contracts.step import StepOutput, detached, task_weights
from mtl_platform.errors import UserError
from mtl_platform.params import Param
from mtl_platform.tasks import ClassificationTask

from .backbones import digits_head
from .contract import SDGData, Synthesis

BACKBONES = ("digits_convnet", "resnet18", "resnet50")
UPDATES = ("sum", "sequential")
SPACES = ("all", "shared")
SELECTION_TASK = "source"  # validation: held-out source data (training-domain validation)
MEAN_KEY = "mean"  # the mean accuracy over the targets, reported beside them (not a task of Δp)
_KEY_MIX = 0x9E3779B97F4A7C15 >> 2  # combines a sample's key with the domain index k


def synthesis_keys(keys: Tensor, k: int) -> Tensor:
    """Per-sample seeds of synthesised domain ``k``: a fixed integer function of the sample's key
    (itself ``mix_seed(seed, epoch, index)``), so every draw depends on (seed, epoch, index, k) only."""
    return (keys ^ ((k + 1) * _KEY_MIX)) & ((1 << 62) - 1)


class KeyedBatches(Dataset):
    """Samples of ``data`` as batches ``(images, labels, keys)``: ``keys[i] = mix_seed(seed,
    epoch, index)`` identifies the draw of sample ``index`` in ``epoch`` (a tuple of ints, so the
    trainer leaves it on the host and the synthesis reads it without a device sync)."""

    def __init__(self, data: Dataset, seed: int, epoch: int):
        self.data, self.seed, self.epoch = data, seed, epoch

    def __len__(self):
        return len(self.data)

    def get_batch(self, idx: Tensor):
        if hasattr(self.data, "get_batch"):
            images, labels = self.data.get_batch(idx)
        else:
            samples = [self.data[int(i)] for i in idx]
            images = torch.stack([s[0] for s in samples])
            labels = torch.as_tensor([int(s[1]) for s in samples], dtype=torch.long)
        keys = tuple(mix_seed(self.seed, self.epoch, int(i)) for i in idx)  # host ints: never moved to a device
        return images, labels, keys


class PerSourceBatches:
    """One sub-batch of every source domain per step (``synthesis: sources``): source s is read
    in its own order for (seed, s, epoch), cycling when it is shorter than the longest source."""

    def __init__(self, sources: list[Dataset], batch_size: int, iterations: int, seed: int, epoch: int,
                 start: int = 0):
        self.sources, self.batch_size, self.iterations, self.start = sources, batch_size, iterations, start
        self.orders = [epoch_order(len(d), mix_seed(seed, s), epoch) for s, d in enumerate(sources)]
        self.keyed = [KeyedBatches(d, mix_seed(seed, s), epoch) for s, d in enumerate(sources)]

    def __len__(self):
        return max(0, self.iterations - self.start)

    def __iter__(self):
        for i in range(self.start, self.iterations):
            batch = []
            for order, keyed in zip(self.orders, self.keyed):
                pos = torch.arange(i * self.batch_size, (i + 1) * self.batch_size) % len(order)
                batch.append(keyed.get_batch(order[pos]))
            yield batch


class SDG(Domain):
    """Single-domain generalisation: one source (``data.source``), unseen targets (``data.targets``).

    Loss terms: ``synthesis.names`` — K synthesised domains ``aug0 … aug{K−1}`` of each source
    batch (or the source domains themselves with ``synthesis: sources``), each a cross-entropy
    of the model on that domain's images. The model is one network: every loss term reads the
    same classifier (``shared_head``), so HPS here is exactly the paper's ResNet + linear
    classifier, and its gradient space is, as in the paper, all trainable parameters
    (``gradient_space: all``; ``shared``: the architecture's shared parameters only).
    Evaluated tasks: accuracy on each target domain (test: all of its data), with their mean
    under ``mean`` in the results (not a task of Δp). Model selection uses only source data:
    ``val`` is a held-out part of the source (training-domain validation), reported as the
    task ``source``. Prediction averages the loss terms' logits (identical with HPS and a shared
    head). The report's STL baseline is ERM: the same config with ``synthesis: plain`` (plain
    source training), trained once and shared by every target.

    ``update: sum`` takes one optimizer step per batch with the weighting's combination;
    ``sequential`` takes one step per row of the weighting's ``sequence`` (DGE's paper form:
    K steps with r_0 … r_{K−1}, all computed at the same parameters; other weightings give
    one row, i.e. the summed update).
    """

    name = "sdg"
    params = (
        Param("data", dict, "digits", "the domains: digits (source mnist; targets uci, mnist_m, shift), pacs, vlcs, "
              "office_home, terra_incognita, domainnet, with source and targets", kind="sdg.data"),
        Param("synthesis", dict, "randaugment", "the loss terms: randaugment, rotation, brightness (K synthesised "
              "domains of each batch), sources (the real source domains), plain (ERM: the batch itself)", kind="sdg.synthesis"),
        Param("update", str, "sum", "one optimizer step on the combined gradient (sum), or one per row of the "
              "weighting's sequence (sequential: DGE's paper form)", choices=UPDATES),
        Param("gradient_space", str, "all", "parameters the weighting combines: all trainable ones (the paper) or the "
              "architecture's shared ones", choices=SPACES),
        Param("shared_head", bool, True, "one classifier read by every loss term (false: one per term)"),
        Param("backbone", str, None, "digits_convnet, resnet18 or resnet50 (null: the data family's default)",
              optional=True, choices=BACKBONES),
        Param("width", float, 1.0, "channel multiplier of the backbone (1: the published network)",
              bounds="(0, inf)"),
        Param("pretrained", str, None, "ResNet weights from a local file (null: random init)", optional=True),
        Param("iterations", int, None, "training iterations per epoch (default: one pass over the source)",
              optional=True, bounds="[1, inf)"),
        Param("batch_size", int, 32, "source images per training batch (per source with synthesis: sources)",
              bounds="[1, inf)"),
        Param("eval_batch_size", int, 256, "batch size for evaluation", bounds="[1, inf)"),
    )

    def __init__(self, seed: int = 0, **params):
        data, synthesis = params.get("data"), params.get("synthesis")
        if not isinstance(data, SDGData) or not isinstance(synthesis, Synthesis):
            raise TypeError("SDG(data=..., synthesis=...) takes built sdg.data and sdg.synthesis components "
                            "(experiment.build_domain builds them)")
        self.data, self.synthesis = data, synthesis
        self.target_tasks = {t: ClassificationTask(t, data.num_classes) for t in data.targets()}
        self.source_task = ClassificationTask(SELECTION_TASK, data.num_classes)
        super().__init__(seed, **params)
        self._head: nn.Module | None = None

    @staticmethod
    def stl_domain_config(section: dict) -> dict:
        """ERM, whatever the synthesis and update: plain source training, one run for every target."""
        return dict(section, synthesis={"name": "plain"}, update="sum", tasks=None)

    # -- tasks ------------------------------------------------------------------------------
    def build_tasks(self):
        return [ClassificationTask(n, self.data.num_classes) for n in self.synthesis.names(self.data.sources())]

    @property
    def eval_tasks(self):
        return list(self.target_tasks)

    @property
    def selection_tasks(self):
        return [SELECTION_TASK]

    def task(self, name):
        if name in self.target_tasks:
            return self.target_tasks[name]
        if name == SELECTION_TASK and name not in self.task_names:
            return self.source_task
        return super().task(name)

    def label_prefix(self) -> str:
        """The synthesis and, when sequential, the update, so the report tells them apart."""
        c = self.synthesis.config
        name = self.synthesis.name + (f" K={c['k']}" if "k" in c else "")
        return name + (" · sequential" if self.config["update"] == "sequential" else "")

    def check_weighting(self, weighting):
        reason = weighting.noop_reason(len(self.task_names))
        if reason:
            raise UserError(f"weighting {weighting.name!r} with {len(self.task_names)} loss terms "
                            f"({', '.join(self.task_names)}) is a no-op: {reason}; use domain.synthesis.k >= 3")

    def check_optimizers(self, optimizers):
        if self.config["update"] == "sequential" and not self.synthesis.per_source and len(self.task_names) < 2:
            raise UserError("domain.update: sequential needs at least two loss terms; got synthesis "
                            f"{self.synthesis.name!r} with one")

    # -- data -----------------------------------------------------------------------------
    def load_split(self, split):
        sources = self.data.sources()
        if split == "train":
            return self._concat([self.data.load(s, "train") for s in sources])
        if split == "val":
            return self._concat([self.data.load(s, "val") for s in sources])
        return {t: self.data.load(t, "test") for t in self.eval_tasks}

    def source_train(self) -> list[Dataset]:
        if not hasattr(self, "_per_source"):
            self._per_source = [self.data.load(s, "train") for s in self.data.sources()]
        return self._per_source

    @staticmethod
    def _concat(parts: list[Dataset]) -> Dataset:
        return parts[0] if len(parts) == 1 else ConcatDataset(parts)

    def prepare(self):
        super().prepare()
        if self.synthesis.per_source:
            self.source_train()

    def iterations(self) -> int:
        c = self.config
        if c["iterations"]:
            return c["iterations"]
        longest = max(len(d) for d in self.source_train()) if self.synthesis.per_source else len(self.dataset("train"))
        return math.ceil(longest / c["batch_size"])

    def loaders(self, split, epoch=0, start=0):
        c = self.config
        if split == "train":
            if self.synthesis.per_source:
                return PerSourceBatches(self.source_train(), c["batch_size"], self.iterations(), self.seed, epoch,
                                        start)
            data = self.dataset("train")
            chunks = batch_indices(len(data), c["batch_size"], shuffle=True, seed=self.seed, epoch=epoch)
            if c["iterations"]:
                chunks = [chunks[i % len(chunks)] for i in range(c["iterations"])]
            return Batches(KeyedBatches(data, self.seed, epoch), chunks, start=start)
        data = self.dataset(split)
        if isinstance(data, dict):
            raise ValueError("the test split holds one dataset per target; evaluate() reads them")
        return Batches(data, batch_indices(len(data), c["eval_batch_size"], shuffle=False), start=start)

    def split_train(self, fraction, seed):
        if self.synthesis.per_source:
            raise UserError("domain sdg: architecture search stages need one source (synthesis: sources has several)")
        return super().split_train(fraction, seed)

    # -- the model --------------------------------------------------------------------------
    def encoder_factory(self):
        from .backbones import BACKBONES

        c = self.config
        name = c["backbone"] or getattr(self.data, "default_backbone", "resnet18")
        channels, size, _ = self.data.image_shape
        return BACKBONES[name](channels, size, width=c["width"], pretrained=c["pretrained"],
                               where="domain.pretrained")

    def head_factory(self, task):
        """One linear classifier over the features; the same module for every loss term when
        ``shared_head`` (the architecture then holds it once, under every term's name). A model
        asks for its heads in the loss terms' order, so the first term's request starts a new
        classifier: two models built from one domain never share one."""
        if self.config["shared_head"] and self._head is not None and task != self.task_names[0]:
            return self._head
        if not hasattr(self, "_features"):
            with torch.random.fork_rng():  # building a probe encoder must not move the model's init RNG
                self._features = self.encoder_factory().out_shape[0]
        features = self._features
        head = digits_head(features, self.data.num_classes)
        if self.config["shared_head"]:
            self._head = head
        return head

    def normalise(self, images: Tensor) -> Tensor:
        mean = torch.tensor(self.data.mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.data.std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        return (images - mean) / std

    # -- the update protocol ------------------------------------------------------------------
    def domain_batches(self, batch) -> list[tuple[Tensor, Tensor]]:
        """The K loss terms' ``(images, labels)`` of one training batch."""
        if self.synthesis.per_source:
            return [(self.normalise(x), y) for x, y, _ in batch]
        x, y, keys = batch
        keys = torch.tensor(keys, dtype=torch.long)
        return [(self.normalise(self.synthesis.transform(x, k, synthesis_keys(keys, k))), y)
                for k in range(len(self.task_names))]

    def losses(self, batch, model):
        out = {}
        for name, (x, y) in zip(self.task_names, self.domain_batches(batch)):
            out[name] = self.task(name).loss(model(x)[name], y)
        return out

    def gradient_params(self, model) -> list[Tensor] | None:
        if self.config["gradient_space"] == "all":
            return [p for p in model.parameters() if p.requires_grad]
        return None

    def check_closure(self, method):
        """A closure method (SAM, PGA, ...) replaces the summed update; the sequential one is
        already several steps per batch and takes none."""
        if self.config["update"] == "sequential":
            raise UserError(f"closure: {method.name} replaces the summed update; domain.update: sequential "
                            f"steps once per refined gradient and takes no closure method (use update: sum)")

    def closure(self, batch, model):
        device = next(model.parameters()).device
        return LossClosure(lambda: self.losses(batch, model), device, params=self.gradient_params(model))

    def train_step(self, batch, model, engine, optimizers) -> StepOutput:
        losses = self.losses(batch, model)
        params = self.gradient_params(model)
        if self.config["update"] == "sequential":
            answer = engine.backward_sequence(losses, optimizers, params=params)
        else:
            answer = engine.backward(losses, params=params)
            engine.step(optimizers, closure=lambda: self.losses(batch, model))
        return StepOutput(detached(losses), task_weights(answer, len(engine.tasks)))

    # -- evaluation ---------------------------------------------------------------------------
    def predict(self, model, images: Tensor) -> Tensor:
        """The mean of the loss terms' logits (one classifier: all equal)."""
        preds = model(self.normalise(images))
        return torch.stack([preds[t] for t in self.task_names]).mean(0)

    @torch.no_grad()
    def accuracy(self, model, data: Dataset, task: ClassificationTask) -> dict[str, float]:
        device = next(model.parameters()).device
        sums: dict[str, Tensor] = {}
        for batch in Batches(data, batch_indices(len(data), self.config["eval_batch_size"], shuffle=False)):
            images, labels = to_device(batch, device)
            for key, value in task.metric_sums(self.predict(model, images), labels).items():
                sums[key] = sums[key] + value if key in sums else value
        return task.finalize(sums)

    @torch.no_grad()
    def evaluate(self, model, split):
        was_training = model.training
        model.eval()
        try:
            if split == "val":
                return {SELECTION_TASK: self.accuracy(model, self.dataset("val"), self.source_task)}
            if split != "test":
                raise ValueError(f"domain sdg evaluates val (the source) or test (the targets), not {split!r}")
            data = self.dataset("test")  # one dataset per target
            out = {t: self.accuracy(model, data[t], self.target_tasks[t]) for t in self.eval_tasks}
            out[MEAN_KEY] = {"accuracy": sum(v["accuracy"] for v in out.values()) / len(out)}
            return out
        finally:
            model.train(was_training)

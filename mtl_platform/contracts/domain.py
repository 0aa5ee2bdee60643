"""The task-domain contract and its default update protocol (DESIGN.md §3.3)."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from .. import distributed
from ..batches import Batches, batch_indices, subset, to_device
from ..errors import UserError
from ..labels import label_masks, present, unpack
from ..params import Param, did_you_mean
from .closure import LossClosure
from .component import Configurable
from .step import StepOutput, detached, task_weights
from .task import Task

SPLITS = ("train", "val", "test")


class Domain(Configurable):
    """Data, tasks, encoder and heads, and how one batch becomes per-task losses.

    Subclasses implement ``build_tasks``, ``dataset(split)``, ``encoder_factory`` and
    ``head_factory``; the defaults of ``losses``, ``train_step`` and ``evaluate`` fit
    ordinary supervised multi-task data whose batches are ``(inputs, {task: target})`` or, where
    samples may lack some tasks' labels, ``(inputs, {task: target}, {task: labelled})``
    (``mtl_platform.labels``: losses and metrics over the labelled samples, the weighting told
    which tasks are present).
    Validation data must never be carved from the test split.
    """

    multi_input = False
    base_params = (
        Param("batch_size", int, 64, "training batch size", bounds="[1, inf)"),
        Param("eval_batch_size", int, 512, "batch size for evaluation", bounds="[1, inf)"),
        Param("tasks", list, None, "train only these tasks (default: all)", item=str, optional=True),
        Param("drop_last", bool, False, "drop the last incomplete training batch"),
        Param("num_workers", int, 0, "DataLoader workers for datasets without batched access", bounds="[0, inf)"),
    )

    def __init__(self, seed: int = 0, **params):
        self.seed = int(seed)
        self.check_ranges(params, "domain")
        self.config = params
        all_tasks = self.build_tasks()
        names = [t.name for t in all_tasks]
        chosen = params.get("tasks")
        if chosen:
            for name in chosen:
                if name not in names:
                    raise UserError(f"domain.tasks: unknown task {name!r} of domain {self.name!r}"
                                    f"{did_you_mean(name, names)}; tasks: {', '.join(names)}")
            all_tasks = [t for t in all_tasks if t.name in chosen]
        self.tasks: list[Task] = all_tasks
        self._datasets: dict[str, Dataset] = {}

    # -- what subclasses provide -------------------------------------------------------
    def build_tasks(self) -> list[Task]:
        raise NotImplementedError

    def load_split(self, split: str) -> Dataset:
        raise NotImplementedError

    def encoder_factory(self) -> nn.Module:
        raise NotImplementedError

    def head_factory(self, task: str) -> nn.Module:
        raise NotImplementedError

    # -- tasks ---------------------------------------------------------------------------
    @property
    def task_names(self) -> list[str]:
        """The ordered loss terms the weighting sees."""
        return [t.name for t in self.tasks]

    @property
    def eval_tasks(self) -> list[str]:
        """The tasks ``evaluate`` reports (Δp and η use these)."""
        return self.task_names

    def task(self, name: str) -> Task:
        return next(t for t in self.tasks if t.name == name)

    @property
    def selection_tasks(self) -> list[str]:
        """The tasks ``evaluate(model, "val")`` reports, whose Δp selects the model (default:
        the evaluated tasks; a generalisation domain selects on its source data instead)."""
        return self.eval_tasks

    def spec(self, tasks: list[str] | None = None) -> dict:
        """Each task's metrics (``Task.spec``), for ``tasks`` (default: the evaluated tasks)."""
        return {name: self.task(name).spec() for name in (self.eval_tasks if tasks is None else tasks)}

    # -- data ----------------------------------------------------------------------------
    def dataset(self, split: str) -> Dataset:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
        if split not in self._datasets:
            self._datasets[split] = self.load_split(split)
        return self._datasets[split]

    def prepare(self) -> None:
        """Load every split now, so a bad data path fails before a run directory exists."""
        for split in SPLITS:
            self.dataset(split)

    def loaders(self, split: str, epoch: int = 0, start: int = 0) -> Batches:
        """Batches of ``split``; training order is a pure function of (seed, epoch).

        In a distributed run ``batch_size`` is per rank: the training batches are the global
        batches of ``batch_size × world`` samples, each rank taking its contiguous slice
        (``distributed.shard``); evaluation batches are shared out in ``evaluate``."""
        data = self.dataset(split)
        train = split == "train"
        world = distributed.world() if train else 1
        size = self.config["batch_size"] * world if train else self.config["eval_batch_size"]
        chunks = batch_indices(len(data), size, shuffle=train, seed=self.seed, epoch=epoch,
                               drop_last=train and self.config["drop_last"])
        chunks = distributed.shard(chunks, distributed.rank(), world)
        return Batches(data, chunks, start=start, num_workers=self.config["num_workers"])

    def split_train(self, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
        """Split the training set into two disjoint parts (search stages use this)."""
        data = self.dataset("train")
        g = torch.Generator().manual_seed(int(seed))
        order = torch.randperm(len(data), generator=g).tolist()
        k = int(round(fraction * len(data)))
        return subset(data, order[:k]), subset(data, order[k:])

    def compose(self, architecture, weighting) -> nn.Module:
        """The model the experiment trains, given ``architecture(encoder_factory, head_factory)``
        (builds the configured architecture from two factories) and ``weighting()`` (a fresh
        instance of the configured weighting). Default: the architecture built from this
        domain's two factories. A domain whose update protocol trains several networks (an
        RL actor and its critics) builds each from its own factories and returns one module
        holding them all, so they share the run's optimizer and checkpoint."""
        return architecture(self.encoder_factory, self.head_factory)

    def save_state(self, checkpoint: Path) -> dict:
        """What this domain must keep across a resume (a replay buffer, environment counters),
        as values ``torch.load(weights_only=True)`` reads back; called when the trainer writes
        the checkpoint ``checkpoint`` (large state may go to an atomically written file next to
        it). Default: nothing."""
        return {}

    def load_state(self, state: dict, checkpoint: Path) -> None:
        """Restore what ``save_state`` returned for ``checkpoint``."""

    def run_info(self) -> dict:
        """Facts every run's results record (package versions an environment depends on)."""
        return {}

    def parameter_groups(self, model: nn.Module) -> dict[str, list]:
        """Named groups of ``model``'s parameters that ``optimizer.lr_mult`` may scale (none by default)."""
        return {}

    def check_optimizers(self, optimizers: list) -> None:
        """Refuse (``UserError``) optimizers this domain's update protocol cannot step. Called
        when the experiment is built, before a run directory exists; the default accepts any."""

    def check_weighting(self, weighting) -> None:
        """Refuse (``UserError``) a weighting this domain's update protocol cannot apply (UDA's
        MCD with a gradient method over the generator). Called with ``check_optimizers``."""

    def check_closure(self, method) -> None:
        """Refuse (``UserError``) a closure method (the config's ``closure``) this domain's update
        protocol cannot take. Called when the experiment is built, before a run directory exists.

        With a closure method the trainer replaces ``train_step`` by
        ``method.step(self.closure(batch, model), engine, optimizers)``. That is the default
        protocol's update, so a domain that keeps the default ``train_step`` accepts every closure
        method; one that overrides it (its own multi-step protocol) is refused here unless it
        overrides this method to say which of its protocols take a closure (and, where its
        gradient space is not the engine's default, returns it from ``closure`` as ``params``)."""
        if type(self).train_step is not Domain.train_step:
            raise UserError(f"closure: domain {self.name!r} has its own update protocol, which takes no closure "
                            f"method; leave closure null (the ordinary update) with this domain")

    def closure(self, batch, model: nn.Module) -> LossClosure:
        """A closure re-evaluating ``losses(batch, model)`` at the current parameters with the random
        draws of its first evaluation (``LossClosure``: the CPU and, on CUDA, the model's device's
        RNG state are captured now and restored before every call)."""
        device = next(model.parameters()).device
        return LossClosure(lambda: self.losses(batch, model), device)

    # -- the update protocol --------------------------------------------------------------
    def losses(self, batch, model: nn.Module) -> dict[str, Tensor]:
        inputs, targets, labelled = unpack(batch)
        preds = model(inputs)
        return {t.name: t.labelled_loss(preds[t.name], targets[t.name], labelled.get(t.name)) for t in self.tasks}

    def present(self, batch) -> Tensor | None:
        """Which loss terms have a labelled sample in ``batch``: a (m,) bool tensor on the device
        (``labels.present``), or None when the batch carries no label mask — any batch other than
        ``(inputs, targets, {task: labelled})``, such as a domain's own format (UDA's source and
        target batches) that reaches this default protocol through its own ``losses``."""
        return present(label_masks(batch), self.task_names)

    def train_step(self, batch, model: nn.Module, engine, optimizers) -> StepOutput:
        """The default protocol: losses, one engine backward, one (possibly accumulated) step,
        after which the engine gives the weighting a closure that re-evaluates this batch.

        The engine zeroes gradients after each optimizer step; the trainer zeroes them before
        the first step, so a resumed or accumulated run starts clean. (A protocol may still
        return the plain dict of detached losses; the trainer then logs no weights.)
        """
        losses = self.losses(batch, model)
        answer = engine.backward(losses, present=self.present(batch))
        engine.step(optimizers, closure=lambda: self.losses(batch, model))
        return StepOutput(detached(losses), task_weights(answer, len(engine.tasks)))

    @torch.no_grad()
    def predictions(self, model: nn.Module, split: str):
        """Per-sample predictions of the evaluated tasks over ``split``, in the dataset's order (the
        training split unshuffled), for ``mtl eval --export``: yields ``{task: (prediction, target,
        labelled or None)}`` per batch, on the CPU. The default fits the batches the default
        ``evaluate`` reads; a domain with its own evaluation protocol overrides this too, or
        leaves export unavailable (``mtl eval`` refuses it in one line)."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        data = self.dataset(split)
        chunks = batch_indices(len(data), self.config["eval_batch_size"], shuffle=False, seed=self.seed, epoch=0)
        try:
            for batch in Batches(data, chunks, num_workers=self.config["num_workers"]):
                inputs, targets, labelled = unpack(to_device(batch, device))
                preds = model(inputs)
                yield {name: (preds[name].detach().cpu(), targets[name].detach().cpu(),
                              None if labelled.get(name) is None else labelled[name].detach().cpu())
                       for name in self.eval_tasks}
        finally:
            model.train(was_training)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, dict[str, float]]:
        """Metrics of every evaluated task over the whole split, accumulated on the device; with
        label masks, over each task's labelled samples only (``Task.labelled_sums``). A task with
        no labelled sample in the split reports NaN for every metric, with a one-line warning.

        In a distributed run each rank evaluates its share of the batches
        (``distributed.evaluation_share``) with rank 0's buffers, and the metric sums are added up
        across ranks before they are finalised."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        sums: dict[str, dict[str, Tensor]] = {t: {} for t in self.eval_tasks}
        counts: dict[str, Tensor] = {}  # labelled samples per masked task, on the device
        loader = self.loaders(split)
        share = distributed.evaluation_share(loader)
        if share is not None:
            distributed.broadcast_buffers(model)
            loader = share
        for batch in loader:
            inputs, targets, labelled = unpack(to_device(batch, device))
            preds = model(inputs)
            for name in self.eval_tasks:
                mask = labelled.get(name)
                if mask is not None:
                    counts[name] = counts.get(name, 0) + mask.sum()
                for key, value in self.task(name).labelled_sums(preds[name], targets[name], mask).items():
                    sums[name][key] = sums[name][key] + value if key in sums[name] else value
        model.train(was_training)
        if share is not None:  # every rank has every key: each evaluated at least one batch
            for name in self.eval_tasks:
                for key in sorted(sums[name]):
                    sums[name][key] = distributed.sum_(torch.as_tensor(sums[name][key], device=device).clone())
            for name in sorted(counts):
                counts[name] = distributed.sum_(torch.as_tensor(counts[name], device=device).clone())
        empty = {name for name, count in counts.items() if int(count) == 0}  # once per evaluation
        for name in sorted(empty):
            warnings.warn(f"task {name!r} has no labelled sample in split {split!r}: its metrics are NaN",
                          stacklevel=2)
        return {name: ({m.name: float("nan") for m in self.task(name).metrics} if name in empty
                       else self.task(name).finalize(sums[name])) for name in self.eval_tasks}

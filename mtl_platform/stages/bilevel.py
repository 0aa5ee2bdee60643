"""First-order bi-level architecture search (Liu et al., DARTS, ICLR 2019, §2.3 first-order;
CoNAL: Yue, PhD thesis 2023, Eq. 5.4 and Algorithm 3; DSMTL-AL: Eq. 6.8; spec thesis.md §3.4, §5.6)."""
from __future__ import annotations

import copy
from typing import Callable

import torch

from .. import runs
from ..atomic import atomic_write_text
from ..batches import Batches, batch_indices
from ..config import dump
from ..contracts.stage import Stage, StageContext
from ..contracts.step import StepOutput, detached, task_weights
from ..experiment import build_experiment
from ..optim import build_optimizer
from ..params import Param, resolve_params, section
from ..trainer import Trainer
from .margins import MIN_MARGIN

# The architecture parameters' default learning rate (Adam). The thesis's values (CoNAL CV 5e-5,
# CoNAL-Pro CelebA 2.5e-5, LTB 1e-4) belong to 200-epoch searches with thousands of steps per
# epoch; after the quickstarts' 2-5 search epochs they left every decision's softmax gap at
# 0.0003-0.048 (docs/conal.md, "Decision margins"). The thesis's configs set their values explicitly.
ALPHA_LR = 3e-3


def search_section(*extra: Param, help: str = "the architecture search stage", **defaults) -> Param:
    """The settings every bi-level search stage takes, as ``architecture.search.*``, plus ``extra``."""
    d = {"epochs": 10, "alpha_lr": ALPHA_LR, "alpha_optimizer": "adam", "bilevel": True, **defaults}
    return section(
        "search", help,
        Param("epochs", int, d["epochs"], "search epochs", bounds="[1, inf)"),
        Param("split", float, 0.5, "fraction of the training set for the weights θ (D_tr); the rest "
              "(D_val) steps the architecture parameters", bounds="(0, 1)"),
        Param("batch_size", int, None, "search batch size (default: domain.batch_size)", optional=True,
              bounds="[1, inf)"),
        Param("lr", float, None, "learning rate of θ (default: optimizer.lr)", optional=True, bounds="(0, inf)"),
        Param("weight_decay", float, None, "weight decay of θ (default: optimizer.weight_decay)", optional=True,
              bounds="[0, inf)"),
        Param("alpha_optimizer", str, d["alpha_optimizer"], "optimizer of the architecture parameters",
              choices=("adam", "adamw", "sgd")),
        Param("alpha_lr", float, d["alpha_lr"], "learning rate of the architecture parameters (the default moves "
              "α clearly in the default epochs on the quickstarts; the thesis's 200-epoch values are 5e-5 for "
              "CoNAL and DSMTL-AL, 2.5e-5 for CoNAL-Pro, 1e-4 for LTB)", bounds="(0, inf)"),
        Param("alpha_weight_decay", float, 1e-5, "weight decay of the architecture parameters", bounds="[0, inf)"),
        Param("bilevel", bool, d["bilevel"], "α on D_val, θ on D_tr, α first (false: one joint step of both on all "
              "the training data, the single-level ablation)"),
        MIN_MARGIN,
        *extra,
    )


class PairedBatches:
    """One batch of each half per iteration: ``(b_val, b_tr)``; as long as the shorter half."""

    def __init__(self, val: Batches, tr: Batches):
        self.val, self.tr = val, tr

    def __len__(self) -> int:
        return min(len(self.val), len(self.tr))

    def __iter__(self):
        return zip(self.val, self.tr)


class BilevelProtocol:
    """Each iteration: (1) on a D_val batch, ∇_α of Σ_t w_t L_t and a step of α only
    (first-order: taken at the current θ, no unrolling); (2) on a D_tr batch, the engine's
    backward of the task losses with the stage's weighting (CoNAL: its conflict rule) and a
    step of θ only. w_t = 1 unless the model learns task weights (``search_loss_weights``,
    DSMTL-AL's softmax(c)); the θ step uses them detached (Eq. 6.7). With ``bilevel: false``
    both steps become one joint step on one batch of the whole training set.
    """

    def __init__(self, exp, settings: dict, seed: int):
        self.exp = exp
        self.theta_opt, self.alpha_opt = exp.optimizers
        self.bilevel = settings["bilevel"]
        self.batch_size = settings["batch_size"] or exp.domain.config["batch_size"]
        self.seed = seed
        self.tr, self.val = exp.domain.split_train(settings["split"], seed)
        self.alpha = exp.model.architecture_parameters()

    def _batches(self, data, epoch: int, start: int, salt: int) -> Batches:
        if hasattr(data, "set_epoch"):
            data.set_epoch(epoch)  # augmentation draws follow (seed, epoch, index), as in ordinary training
        chunks = batch_indices(len(data), self.batch_size, shuffle=True, seed=self.seed + salt, epoch=epoch)
        return Batches(data, chunks, start=start)

    def batches(self, epoch: int, start: int):
        if not self.bilevel:
            return self._batches(self.exp.domain.dataset("train"), epoch, start, 0)
        return PairedBatches(self._batches(self.val, epoch, start, 1), self._batches(self.tr, epoch, start, 2))

    def _weights(self):
        fn = getattr(self.exp.model, "search_loss_weights", None)
        return fn() if fn is not None else None

    def step(self, batch) -> dict:
        e = self.exp
        domain, model = e.domain, e.model
        if not self.bilevel:
            losses = domain.losses(batch, model)
            w = self._weights()
            answer = e.engine.backward(losses if w is None else
                                       {t: w[i] * losses[t] for i, t in enumerate(e.engine.tasks)})
            e.engine.step([self.theta_opt, self.alpha_opt], closure=lambda: domain.losses(batch, model))
            return StepOutput(detached(losses), task_weights(answer, len(e.engine.tasks)))
        b_val, b_tr = batch
        # (1) the architecture step, first: only α receives (and keeps) a gradient
        self.alpha_opt.zero_grad(set_to_none=True)
        losses = domain.losses(b_val, model)
        stacked = torch.stack([losses[t].reshape(()) for t in e.engine.tasks])
        w = self._weights()
        total = stacked.sum() if w is None else (w * stacked).sum()
        torch.autograd.backward(total, inputs=self.alpha)
        self.alpha_opt.step()
        self.alpha_opt.zero_grad(set_to_none=True)
        # (2) the weight step with the stage's weighting; the engine's ∇ΣL on α is discarded
        losses = domain.losses(b_tr, model)
        w = self._weights()
        scaled = losses if w is None else {t: w[i].detach() * losses[t] for i, t in enumerate(e.engine.tasks)}
        answer = e.engine.backward(scaled)
        e.engine.step([self.theta_opt], closure=lambda: domain.losses(b_tr, model))
        self.alpha_opt.zero_grad(set_to_none=True)
        return StepOutput(detached(losses), task_weights(answer, len(e.engine.tasks)))

    def flush(self) -> None:
        self.exp.engine.flush([self.theta_opt] if self.bilevel else [self.theta_opt, self.alpha_opt])


class BilevelSearch(Stage):
    """Search the model's ``architecture_parameters()`` against its weights θ (everything else).

    Settings come from ``architecture.<section>`` (see ``search_section``); θ uses the run's
    optimizer (with the section's lr and weight decay), α its own optimizer; no learning-rate
    schedule; the last epoch's model is what derivation reads. ``weighting(ctx)`` names the
    θ step's weighting as a config section (CoNAL: its conflict rule), chosen by the
    architecture that declares the stage. A configured closure method (DESIGN.md §3.5) is not
    applied here (the two bi-level steps are this stage's own protocol; it says so once): the
    ordinary training stages that follow (retraining) use it.
    """

    def __init__(self, name: str = "search", section: str = "search", *, weighting: Callable[[StageContext], dict]):
        self.name = name
        self.section = section
        self.weighting = weighting

    def run(self, ctx: StageContext) -> dict:
        s = ctx.arch_config[self.section]
        config = copy.deepcopy(ctx.config)
        config["train"].update(epochs=s["epochs"], select="last", accumulate=1)
        chosen = self.weighting(ctx)
        comp = ctx.registry.get("weighting", chosen["name"])
        config["weighting"] = resolve_params(comp.params, chosen, "weighting")
        if config.get("closure") is not None:  # the search's own protocol; later ordinary stages use it
            ctx.echo(f"{self.name}: the search steps without closure {config['closure']['name']!r}; the ordinary "
                     f"training stages use it")
            config["closure"] = None
        atomic_write_text(ctx.stage_dir / runs.CONFIG_FILE, dump(config))
        exp = build_experiment(config, ctx.registry, domain=ctx.domain)
        arch_ids = {id(p) for p in exp.model.architecture_parameters()}
        theta = [p for p in exp.model.parameters() if id(p) not in arch_ids] + list(exp.weighting.parameters())
        opt = config["optimizer"]
        theta_cfg = dict(opt, lr=opt["lr"] if s["lr"] is None else s["lr"],
                         weight_decay=opt["weight_decay"] if s["weight_decay"] is None else s["weight_decay"])
        alpha_cfg = dict(opt, name=s["alpha_optimizer"], lr=s["alpha_lr"], weight_decay=s["alpha_weight_decay"])
        exp.optimizers = [build_optimizer(theta_cfg, theta),
                          build_optimizer(alpha_cfg, exp.model.architecture_parameters())]
        exp.scheduler = None
        protocol = BilevelProtocol(exp, s, config["train"]["seed"])
        extra = {"architecture": config["architecture"], "parameters": exp.model.parameter_counts()}
        trainer = Trainer(exp, ctx.stage_dir, ctx.pm, stage=self.name, extra=extra, echo=ctx.echo,
                          protocol=protocol)
        return trainer.fit(resume=ctx.resume)

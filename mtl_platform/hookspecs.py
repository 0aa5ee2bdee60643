"""The pluggy hook specifications of mtl-platform (DESIGN.md §4).

Every component, built-in or third-party, arrives through ``mtl_register``; loggers,
callbacks and early stopping use the training-loop hooks. An implementation may accept
a subset of a hook's arguments, so new arguments never break old plugins.
"""
import pluggy

PROJECT = "mtl_platform"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def mtl_register(registry):
    """Add components: ``registry.add_weighting(cls)``, ``add_architecture``, ``add_domain``,
    ``add_closure``, or ``registry.add(kind, cls)`` for a sub-kind (e.g. ``"uda.method"``)."""


@hookspec
def mtl_run_start(run):
    """A training run (the main run or one STL baseline, see ``run.stage``) is about to train."""


@hookspec
def mtl_epoch_end(run, epoch, metrics):
    """An epoch ended; ``metrics`` is the row written to ``metrics.jsonl``.
    Call ``run.request_stop(reason)`` to stop after this epoch (early stopping)."""


@hookspec
def mtl_evaluate(run, split, epoch, results):
    """``results`` = ``{task: {metric: value}}`` of ``split`` after ``epoch`` (0-based)."""


@hookspec
def mtl_diagnostics(run, rows):
    """The gradient engine's diagnostics ``rows`` (task weights, norms, pairwise cosines, the
    conflict fraction, each at its engine step) were just appended to ``diagnostics.jsonl``."""


@hookspec
def mtl_checkpoint(run, path):
    """A checkpoint was written atomically to ``path``."""


@hookspec
def mtl_run_end(run, results):
    """A run finished; ``results`` is what it wrote to ``results.json``."""

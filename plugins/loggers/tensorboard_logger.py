"""TensorBoard event files of a run's scalars, through ``torch.utils.tensorboard``."""
from __future__ import annotations

from pathlib import Path

from mtl_platform.contracts import Logger
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

#: the sub-folders of ``RUN_DIR/<folder>``: one TensorBoard "run" per step axis
AXES = {"metrics": ".", "diagnostics": "diagnostics"}


class TensorBoardLogger(Logger):
    """TensorBoard event files in RUN_DIR/tensorboard (pip install 'mtl-platform[tensorboard]').

    Epoch rows (losses, weights, val/test metrics, learning rate) are logged at the training step
    the epoch ended on, in ``tensorboard/``; the gradient diagnostics (weights, cosines,
    conflicts, norms) at the engine's step, in ``tensorboard/diagnostics/`` (a second run in
    TensorBoard's list, since the engine counts optimizer steps). Values are stored as float64
    tensors (``double_precision``), so they read back equal to ``metrics.jsonl``. A resumed run
    purges the events after its checkpoint (``purge_step``), so no point is shown twice.
    """

    name = "tensorboard"
    requires = (("tensorboard", "install it with: pip install 'mtl-platform[tensorboard]'"),)
    params = (Param("folder", str, "tensorboard", "sub-folder of the run directory for the event files"),)

    def setup(self):
        self.writers: dict[tuple[str, str], object] = {}

    def start(self, run, resumed):
        from torch.utils.tensorboard import SummaryWriter

        for kind, sub in AXES.items():
            # every writer opens with a session START event: TensorBoard purges the events at and after
            # a later START's step, the steps a resumed run logs again (the first START purges nothing)
            purge = resumed[kind] + 1 if resumed else 0
            self.writers[(str(run.run_dir), kind)] = SummaryWriter(
                log_dir=str(Path(run.run_dir) / self.folder / sub), purge_step=purge, flush_secs=3600)

    def log(self, run, kind, step, scalars):
        writer = self.writers[(str(run.run_dir), kind)]
        for tag, value in scalars.items():
            writer.add_scalar(tag, float(value), global_step=step, new_style=True, double_precision=True)

    def flush(self, run):
        for (folder, _), writer in self.writers.items():
            if folder == str(run.run_dir):
                writer.flush()

    def end(self, run):
        for key in [k for k in self.writers if k[0] == str(run.run_dir)]:
            self.writers.pop(key).close()


@hookimpl
def mtl_register(registry):
    registry.add_logger(TensorBoardLogger)

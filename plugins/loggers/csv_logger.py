"""A CSV file of a run's scalars (standard library only)."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from mtl_platform.atomic import atomic_write_text
from mtl_platform.contracts import Logger
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

COLUMNS = ("kind", "step", "tag", "value")


class CSVLogger(Logger):
    """Every scalar of the run as a row ``kind,step,tag,value`` of RUN_DIR/scalars.csv.

    ``kind`` is ``metrics`` (an epoch's row of ``metrics.jsonl``, at the training step it ended
    on) or ``diagnostics`` (a row of ``diagnostics.jsonl``, at the engine's step); ``tag`` as in
    TensorBoard (``test/left/accuracy``, ``diagnostics/cos/left|right``); ``value`` written with
    ``repr``, so it reads back as the same float. One long table rather than a column per tag:
    the tags a run logs are not known in advance (a search adds its α, a weighting its own
    diagnostics). A resumed run first drops the rows after its checkpoint.
    """

    name = "csv"
    params = (Param("file", str, "scalars.csv", "file name in the run directory"),)

    def setup(self):
        self.files: dict[str, object] = {}

    def start(self, run, resumed):
        path = Path(run.run_dir) / self.file
        kept = []
        if resumed is not None and path.exists():
            with open(path, newline="") as fh:
                kept = [r for r in csv.DictReader(fh) if int(r["step"]) <= resumed[r["kind"]]]
        buf = io.StringIO()
        table = csv.writer(buf)
        table.writerow(COLUMNS)
        table.writerows([r[c] for c in COLUMNS] for r in kept)
        atomic_write_text(path, buf.getvalue())  # the header and what the resumed run kept
        fh = open(path, "a", newline="")
        self.files[str(run.run_dir)] = (fh, csv.writer(fh))

    def log(self, run, kind, step, scalars):
        _, writer = self.files[str(run.run_dir)]
        for tag, value in scalars.items():
            writer.writerow((kind, step, tag, repr(float(value))))

    def flush(self, run):
        fh, _ = self.files[str(run.run_dir)]
        fh.flush()
        os.fsync(fh.fileno())

    def end(self, run):
        fh, _ = self.files.pop(str(run.run_dir))
        fh.close()


@hookimpl
def mtl_register(registry):
    registry.add_logger(CSVLogger)

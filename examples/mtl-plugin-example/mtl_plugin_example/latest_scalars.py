import json
from pathlib import Path

from mtl_platform.atomic import atomic_write_text
from mtl_platform.contracts import Logger
from mtl_platform.params import Param


class LatestScalars(Logger):
    """The newest value of every scalar in RUN_DIR/latest.json, rewritten after each epoch.

    A file a dashboard or a shell loop can poll (``watch cat runs/*/latest.json``): one entry
    per tag, ``{"step": ..., "value": ...}``. Written atomically, so a reader never sees half a file.
    """

    name = "latest_json"
    params = (Param("file", str, "latest.json", "file name in the run directory"),)

    def setup(self):
        self.latest = {}  # run folder -> {tag: {"step", "value"}}

    def start(self, run, resumed):
        self.latest[str(run.run_dir)] = {}

    def log(self, run, kind, step, scalars):
        self.latest[str(run.run_dir)].update({tag: {"step": step, "value": v} for tag, v in scalars.items()})

    def flush(self, run):
        text = json.dumps(self.latest[str(run.run_dir)], indent=1, sort_keys=True)
        atomic_write_text(Path(run.run_dir) / self.file, text + "\n")

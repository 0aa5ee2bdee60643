"""Run stages (DESIGN.md §3.4): the generic building blocks searched architectures compose.

- ``TrainStage``: train one model (the ordinary run; retraining; DSMTL-IL's gated stage);
- ``BilevelSearch``: first-order bi-level search of architecture parameters (CoNAL, DSMTL-AL);
- ``DeriveStage``: turn a searched model into a plain-JSON architecture;
- ``STLStage``: each task's single-task model, from the STL baseline cache;
- ``run_stages``: run a plan in ``RUN_DIR/stages/<name>/`` and resume the one that was running.
"""
from .bilevel import BilevelSearch
from .derive import DeriveStage, from_derived
from .runner import run_stages
from .stl import STLStage
from .train import TrainStage

__all__ = ["BilevelSearch", "DeriveStage", "STLStage", "TrainStage", "from_derived", "run_stages"]

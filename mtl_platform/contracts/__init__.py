"""The base contracts every component implements (DESIGN.md §2, §3)."""
from .architecture import Architecture
from .closure import ClosureMethod, LossClosure
from .component import Configurable
from .domain import Domain
from .encoder import StagedEncoder
from .logger import Logger
from .step import StepOutput, task_weights
from .task import Metric, Task
from .weighting import Needs, Weighting

__all__ = ["Architecture", "ClosureMethod", "Configurable", "Domain", "Logger", "LossClosure", "Metric", "Needs", "StagedEncoder",
           "StepOutput", "Task", "Weighting", "task_weights"]

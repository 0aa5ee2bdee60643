"""The gradient engine: the one place per-task gradients are formed (DESIGN.md §3.2)."""
from .engine import GradientEngine

__all__ = ["GradientEngine"]

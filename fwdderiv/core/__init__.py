"""Layer protocol, graph runner and the per-layer trace of the forward derivative."""
from .layer import Layer
from .sequential import Sequential
from .trace import Trace

__all__ = ["Layer", "Sequential", "Trace"]

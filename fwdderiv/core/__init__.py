"""Layer protocol, graph runner and the per-layer trace of the forward derivative."""
from .elementwise import Elementwise
from .graph import Graph
from .layer import Layer
from .sequential import Sequential
from .trace import Trace

__all__ = ["Elementwise", "Graph", "Layer", "Sequential", "Trace"]

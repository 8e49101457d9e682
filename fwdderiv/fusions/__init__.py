"""Fusion rules: each module matches a few nodes and returns one step that computes them
in one pass, tested against the steps it replaces (``tests/fusions/``).

Importing this package registers the rules with the planner
(:func:`fwdderiv.core.plan.register`) in the order below: where two rules match at one
node, the first wins (a convolution before a ReLU and a max-pool is taken by
``conv_pool`` before ``slope_pool`` sees the pool).
"""
from ..core.plan import FORWARD, REVERSE, WINDOWED, register
from . import batchnorm_fold, conv_pool, scaled_linear, slope_pool, window_head

register(conv_pool.windows, WINDOWED)
register(slope_pool.windows, WINDOWED)
register(window_head.rule, FORWARD)
register(scaled_linear.rule, FORWARD)
register(batchnorm_fold.forward, FORWARD)
register(conv_pool.scatter, REVERSE)
register(slope_pool.scatter, REVERSE)
register(batchnorm_fold.reverse, REVERSE)

__all__ = ["batchnorm_fold", "conv_pool", "scaled_linear", "slope_pool", "window_head"]

"""Splitting a Jacobian's directions and examples into chunks that fit a memory budget."""
import math
import warnings
from typing import NamedTuple

import numpy as np


class ChunkPlan(NamedTuple):
    example_chunks: list       # [(n0, n1), ...]
    direction_chunks: list     # [(d0, d1), ...]
    bytes_per_direction: int   # tangent work for one direction of one example
    bytes_per_example: int     # primal caches of one example


def _size(shape):
    return math.prod(int(s) for s in shape)


def estimate(steps, shapes, itemsize, start=0):
    """Bytes per (example, direction) of tangent work, and per example of primal caches.

    ``steps`` lists, per node, ``(layer, input shapes, output shape, alive)``, with
    ``alive`` the elements of other values kept across the node (a residual branch).
    While a layer runs, its input tangents, its output tangent, its workspace (a conv's
    im2col columns, declared by ``layer.work_size(in_shape)``) and the kept values are
    alive at once.
    """
    per_dir, per_example = _size(shapes[-1]), 0
    for i, (layer, s_ins, s_out, alive) in enumerate(steps):
        work = layer.work_size(s_ins[0]) if hasattr(layer, "work_size") else 0
        if i >= start:
            per_dir = max(per_dir, sum(_size(s) for s in s_ins) + _size(s_out) + work + alive)
        per_example += 2 * _size(s_out) + work
    return max(per_dir, 1) * itemsize, (per_example + _size(shapes[0])) * itemsize


def _ranges(total, step):
    return [(i, min(i + step, total)) for i in range(0, total, step)]


def plan_windowed(steps, shapes, n_examples, itemsize, max_memory, n_windowed,
                  window_elements):
    """Chunks for a forward Jacobian whose first ``n_windowed`` layers run on windowed
    tangents: the windows of an example cost ``window_elements`` whatever the directions;
    the dense layers after them cost ``per_dir`` per direction. None if one example with
    one direction does not fit ``max_memory`` (the caller then goes dense throughout)."""
    per_dir, per_example = estimate(steps, shapes, itemsize, start=n_windowed)
    per_example += window_elements * itemsize
    D = _size(shapes[0])
    if per_example + per_dir > max_memory:
        return None
    dc = max(1, min(D, (max_memory - per_example) // per_dir))
    nc = max(1, min(n_examples, max_memory // (per_example + dc * per_dir)))
    return ChunkPlan(_ranges(n_examples, nc), _ranges(D, dc), per_dir, per_example)


def plan_chunks(steps, shapes, n_examples, n_directions, itemsize, max_memory,
                component="jacobian", stretch=False):
    """Choose chunks so that one chunk's work stays within ``max_memory`` bytes.

    All directions of an example go together when they fit (the shared first-layer
    tangents are then computed once per example chunk); examples fill what is left. With
    ``stretch`` (the caller's budget is the default, not the user's), a budget smaller
    than one direction of one example grows to that; otherwise it is an error.
    """
    per_dir, per_example = estimate(steps, shapes, itemsize)
    need = per_dir + per_example
    if stretch and need > max_memory:
        warnings.warn(f"{component}: one direction of one example needs {need} bytes, more "
                      f"than the default max_memory ({int(max_memory)}); using {need}",
                      stacklevel=4)
        max_memory = need
    if max_memory < need:
        raise ValueError(
            f"{component}: max_memory={int(max_memory)} bytes is too small for this "
            f"network and input shape; one direction of one example needs at least {need} "
            f"bytes. Raise max_memory to {need} or more")
    dc = max(1, min(n_directions, (max_memory - per_example) // per_dir))
    nc = max(1, min(n_examples, max_memory // (per_example + dc * per_dir)))
    return ChunkPlan(_ranges(n_examples, nc), _ranges(n_directions, dc), per_dir, per_example)

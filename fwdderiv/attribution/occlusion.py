r"""Occlusion (Zeiler and Fergus, "Visualizing and Understanding Convolutional Networks",
ECCV 2014), with Captum's ``Occlusion`` arguments and averaging."""
import itertools
import math
import numbers

import numpy as np

from ._common import (ALL, Attribution, baselines_like, budget, costs, forward, held,
                      prepare, select)
from ..training.progress import make_bar, progress_enabled


def _per_dim(value, ndim, name, where, default=None):
    if value is None:
        value = default
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (int(value),) * ndim
    value = tuple(value) if isinstance(value, (tuple, list)) else value
    if (not isinstance(value, tuple) or len(value) != ndim
            or not all(isinstance(v, numbers.Integral) and v >= 1 for v in value)):
        raise ValueError(f"{where} expected {name} as {ndim} positive integers, one per "
                         f"axis of an example (e.g. (1, 3, 3) for (C, H, W) images), got "
                         f"{value!r}")
    return tuple(int(v) for v in value)


def windows(shape, window, strides):
    """Index tuples of every window position, Captum's grid: along an axis of length L,
    ``ceil((L - w) / s) + 1`` starts ``0, s, 2s, ...``; the last window is cut at the
    border."""
    ranges = []
    for L, w, s in zip(shape, window, strides):
        count = math.ceil((L - w) / s) + 1
        ranges.append([slice(j * s, min(j * s + w, L)) for j in range(count)])
    return list(itertools.product(*ranges))


class Occlusion(Attribution):
    r"""The output drop when a window of the input is replaced by the baseline.

    For every window position P (a box of ``sliding_window_shapes`` moved by
    ``strides``), :math:`\Delta_P = F_t(x) - F_t(x \text{ with } P \text{ set to } b)`;
    a feature's attribution is the mean of :math:`\Delta_P` over the windows that
    contain it. A window covering the whole input gives every feature
    :math:`F_t(x) - F_t(b)`. Gradient-free: one forward pass per window, and every
    class comes from the same passes (``target="all"``).
    """

    @held
    def attribute(self, inputs, sliding_window_shapes, strides=None, baselines=None,
                  target=None, perturbations_per_eval=1, show_progress=False,
                  max_memory=None):
        """Attributions of ``inputs``.

        Parameters
        ----------
        inputs : ndarray of shape (N, *S)
        sliding_window_shapes : tuple of len(S) ints
            Window shape over one example, e.g. ``(1, 3, 3)``.
        strides : int or tuple of len(S) ints, optional
            Shift of the window along each axis (default 1); at most the window size
            where the window is smaller than the input.
        baselines : None, float, or ndarray of shape S, (1, *S) or (N, *S)
            What an occluded feature is set to (default 0).
        target : int, sequence of N ints, "all" or None
            As in :meth:`fwdderiv.attribution.Saliency.attribute`.
        perturbations_per_eval : int, default 1
            Window positions evaluated in one forward pass (lowered if ``max_memory``
            needs it).
        show_progress : bool
            Progress bar over the window positions.
        max_memory : int, optional
            Bytes for the occluded copies and their forward pass.

        Returns
        -------
        ndarray of shape (N, *S), or (N, K, *S) for ``target="all"``
        """
        where = self._where()
        x, K, t = prepare(self, inputs, target)
        N, S = x.shape[0], x.shape[1:]
        window = _per_dim(sliding_window_shapes, len(S), "sliding_window_shapes", where)
        strides = _per_dim(strides, len(S), "strides", where, default=1)
        for L, w, s in zip(S, window, strides):
            if w > L:
                raise ValueError(f"{where}: sliding_window_shapes {window} exceed the "
                                 f"example shape {S}; use a smaller window")
            if w < L and s > w:
                raise ValueError(f"{where}: strides {strides} are larger than the window "
                                 f"{window}, which would skip features; use strides <= "
                                 "window")
        if not isinstance(perturbations_per_eval, numbers.Integral) or perturbations_per_eval < 1:
            raise ValueError(f"{where} expected perturbations_per_eval as an integer >= 1, "
                             f"got {perturbations_per_eval!r}")
        b = baselines_like(baselines, x, where)
        memory = budget(max_memory, where)
        per_example, _ = costs(self.net, S, x.dtype.itemsize)
        batch = max(1, min(int(perturbations_per_eval),
                           memory // (N * (per_example + x[0].nbytes))))
        F0 = select(forward(self.net, x, memory), t)              # (N,) or (N, K)
        lead = (slice(None),) * (2 if t is ALL else 1)
        total = np.zeros(F0.shape + S, dtype=np.float64)
        count = np.zeros(S, dtype=np.float64)
        boxes = windows(S, window, strides)
        bar = make_bar(len(boxes), "occlusion", progress_enabled(bool(show_progress)))
        for p0 in range(0, len(boxes), batch):
            group = boxes[p0:p0 + batch]
            xs = np.repeat(x[None], len(group), axis=0)           # (P, N, *S)
            for p, box in enumerate(group):
                xs[(p, slice(None)) + box] = b[(slice(None),) + box]
            out = forward(self.net, xs.reshape((-1,) + S), memory)
            out = out.reshape((len(group), N) + out.shape[1:])
            for p, box in enumerate(group):
                drop = F0 - select(out[p], t)
                total[lead + box] += drop.reshape(drop.shape + (1,) * len(S))
                count[box] += 1
            bar.update(len(group))
        bar.close()
        return (total / count).astype(x.dtype)

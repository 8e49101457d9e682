"""The graph runner for a chain of layers: forward, JVP, VJP and Jacobians."""
import functools

import numpy as np

from .._threads import blas_limited
from .._validation import as_float_array, check_tangent, shape_str
from ..config import DEFAULT_MAX_MEMORY
from ..layers import AvgPool2d, Conv2d, MaxPool2d
from .layer import _with_batch, cast_scope
from . import local
from .memory import plan_chunks, plan_windowed
from .trace import Trace


def _call(method):
    """A public Sequential method's scope: BLAS limited while a network with Numba kernel
    layers runs (:mod:`fwdderiv._threads`), parameter casts shared by its layers."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with blas_limited(self.numba_heavy), cast_scope():
            return method(self, *args, **kwargs)
    return wrapper


class Sequential:
    r"""A chain of layers, :math:`F = f_L \circ \dots \circ f_1`.

    Carries the primal :math:`H_k` and the tangent :math:`\partial H_k / \partial x` side
    by side, as equation (6) of Papernot et al. (2016):
    :math:`\partial H_k/\partial x = f_k'(\cdot)\,(W_k\,\partial H_{k-1}/\partial x)`,
    starting from :math:`\partial H_0/\partial x = I`.

    Parameters
    ----------
    layers : sequence of layers
        Objects following the layer protocol (:class:`fwdderiv.core.Layer`).

    Examples
    --------
    >>> import numpy as np, fwdderiv as fd
    >>> net = fd.Sequential([fd.Linear(3, 4), fd.ReLU(), fd.Linear(4, 2), fd.Softmax()])
    >>> net.jacobian(np.ones((5, 3))).shape
    (5, 2, 3)
    """

    def __init__(self, layers):
        layers = list(layers)
        for i, layer in enumerate(layers):
            missing = [m for m in ("output_shape", "forward", "jvp", "vjp")
                       if not callable(getattr(layer, m, None))]
            if missing:
                raise TypeError(
                    f"Sequential: item {i} ({layer!r}) is not a layer: it lacks "
                    f"{', '.join(missing)}; subclass fwdderiv.core.Layer")
        self.layers = layers

    # -- container ------------------------------------------------------------------
    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(self.layers[index])
        return self.layers[index]

    def __repr__(self):
        inner = "".join(f"\n  ({i}) {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"

    @property
    def numba_heavy(self):
        """True if a layer runs Numba kernels (convolution, pooling): BLAS is then kept
        single-threaded during this network's calls (:mod:`fwdderiv._threads`)."""
        return any(isinstance(layer, (Conv2d, MaxPool2d, AvgPool2d)) for layer in self.layers)

    @property
    def params(self):
        """One dict of live parameter arrays per layer (empty for parameter-free layers)."""
        return [getattr(layer, "params", {}) for layer in self.layers]

    # -- shapes -----------------------------------------------------------------------
    def shapes(self, in_shape):
        """Per-example shapes ``[S_0, S_1, ..., S_L]`` of every activation H_k."""
        shapes = [tuple(int(s) for s in in_shape)]
        for i, layer in enumerate(self.layers):
            try:
                shapes.append(tuple(layer.output_shape(shapes[-1])))
            except (ValueError, TypeError) as err:
                raise type(err)(f"Sequential layer {i}, {err}") from None
        return shapes

    def output_shape(self, in_shape):
        """Per-example output shape; a ValueError names the first layer that does not fit."""
        return self.shapes(in_shape)[-1]

    def _input(self, x):
        x = as_float_array(x, "Sequential", "x")
        if x.ndim < 2:
            raise ValueError(
                f"Sequential expected a batch x of shape (N, *S) with at least 2 axes, got "
                f"{shape_str(x.shape)}; add a batch axis with x[None]")
        try:
            return x, self.shapes(x.shape[1:])
        except ValueError as err:
            raise (_with_batch(err, x.shape) if str(err).startswith("Sequential layer 0,")
                   else err) from None

    # -- primal -----------------------------------------------------------------------
    @_call
    def forward(self, x):
        """Output ``F(x)`` of shape ``(N, *S_out)`` for a batch ``x`` of shape ``(N, *S_in)``."""
        x, shapes = self._input(x)
        for layer in self.layers:
            x = layer.forward(x)[0]
        return x

    __call__ = forward

    @_call
    def forward_cached(self, x):
        """``(y, caches)``: the output and each layer's cache, for :meth:`backward`."""
        x, _ = self._input(x)
        return self._forward_cached(x)

    def _forward_cached(self, x):
        caches = []
        for layer in self.layers:
            x, cache = layer.forward(x)
            caches.append(cache)
        return x, caches

    @_call
    def backward(self, caches, gy, input_grad=True):
        """Reverse pass for training.

        Parameters
        ----------
        caches : list
            From :meth:`forward_cached`.
        gy : ndarray of shape (N, *S_out)
            Cotangent of the output (e.g. the loss gradient).
        input_grad : bool
            If False, skip the cotangent of the input (``gx`` is None).

        Returns
        -------
        gx : ndarray of shape (N, *S_in) or None
        grads : list of dict
            Parameter gradients, one dict per layer, keys as in ``layer.params``.
        """
        grads = [None] * len(self.layers)
        g = gy
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            grads[i] = layer.param_vjp(caches[i], g) if hasattr(layer, "param_vjp") else {}
            if i > 0 or input_grad:
                g = layer.vjp(caches[i], g[:, None])[:, 0]
        return (g if input_grad else None), grads

    # -- derivatives ------------------------------------------------------------------
    @_call
    def jvp(self, x, dx):
        """Forward mode: ``(y, dy)`` with ``dy = (dF/dx) dx``.

        ``dx`` has shape ``(N, D, *S_in)`` (D directions per example); ``dy`` has shape
        ``(N, D, *S_out)``. The primal is computed once for the batch.
        """
        x, _ = self._input(x)
        dx = check_tangent(x, dx, "Sequential.jvp")
        for layer in self.layers:
            x, cache = layer.forward(x)
            dx = layer.jvp(cache, dx)
        return x, dx

    @_call
    def vjp(self, x, gy):
        """Reverse mode: ``(y, gx)`` with ``gx = gy (dF/dx)``.

        ``gy`` has shape ``(N, K, *S_out)``; ``gx`` has shape ``(N, K, *S_in)``.
        """
        x, shapes = self._input(x)
        y, caches = self._forward_cached(x)
        g = check_tangent(y, gy, "Sequential.vjp", name="gy", what="cotangent")
        return y, self._pullback(caches, g)

    def _pullback(self, caches, g):
        """Cotangents ``g`` (N, K, *S_out) pulled back through every layer. An elementwise
        layer just before a max-pool is fused into the pool's scatter, and a conv before
        them scatters straight from the pool's output cotangent when that is faster
        (:meth:`Conv2d.vjp_through_pool`): one pass instead of three over the largest
        cotangents, most of whose entries are zero."""
        layers = self.layers
        i = len(layers) - 1
        while i >= 0:
            layer = layers[i]
            fused = i > 0 and local.fuses_into_next(layers[i - 1], layer)
            slope = caches[i - 1] if fused else None
            j = i - 1 - fused            # the layer before the pool (and its fused layer)
            if j >= 0 and type(layer) is MaxPool2d and type(layers[j]) is Conv2d:
                gx = layers[j].vjp_through_pool(caches[j], g, caches[i], slope)
                if gx is not None:
                    g, i = gx, j - 1
                    continue
            g = layer.vjp(caches[i], g, slope=slope) if fused else layer.vjp(caches[i], g)
            i = j
        return g

    @_call
    def jacobian(self, x, mode="forward", max_memory=None, return_output=False,
                 intermediates=False, windowed=True):
        r"""The forward derivative :math:`\partial F/\partial x` of every example.

        Parameters
        ----------
        x : ndarray of shape (N, *S_in)
        mode : {"forward", "reverse"}
            ``"forward"`` pushes the identity seed through the layers (the paper's
            recursion, one tangent column per input feature); ``"reverse"`` pulls one
            cotangent per output back. Both give the same matrix.
        max_memory : int, optional
            Bytes allowed for the tangent work of one call (default
            :data:`fwdderiv.config.DEFAULT_MAX_MEMORY`). Directions and examples are split
            into chunks that fit; the result itself is not counted.
        return_output : bool
            Also return ``F(x)``, computed once with the Jacobian.
        intermediates : bool
            Return a :class:`fwdderiv.core.Trace` with every H_k and dH_k/dx instead.
        windowed : bool
            Forward mode only: carry the tangents of the leading conv/pool/elementwise
            layers as receptive-field windows (:mod:`fwdderiv.core.local`), where they
            can be non-zero, and go dense after. False carries dense tangents throughout.
            Both give the same numbers up to float rounding.

        Returns
        -------
        J : ndarray of shape (N, *S_out, *S_in)
            The layout of ``torch.func.vmap(torch.func.jacfwd(f))``.
        """
        if mode not in ("forward", "reverse"):
            raise ValueError(f"Sequential.jacobian: mode must be 'forward' or 'reverse', "
                             f"got {mode!r}")
        x, shapes = self._input(x)
        if max_memory is None:
            max_memory = DEFAULT_MAX_MEMORY
        if intermediates:
            if mode != "forward":
                raise ValueError("Sequential.jacobian: intermediates=True needs mode='forward'")
            return self._trace(x, shapes)
        N, s_in, s_out = x.shape[0], shapes[0], shapes[-1]
        D, K = int(np.prod(s_in)), int(np.prod(s_out))
        n_win, windows, plan = 0, [], None
        if mode == "forward" and windowed:
            n_win, windows = local.plan(self.layers, shapes)
            # the longest windowed prefix whose windows fit the budget (windows grow with
            # depth: on a large input the last ones can outweigh dense direction chunks)
            while n_win and plan is None:
                plan = plan_windowed(self.layers, shapes, N, x.dtype.itemsize, max_memory,
                                     n_win, local.elements_per_example(shapes, windows[:n_win]))
                n_win -= plan is None
            windows = windows[:n_win]
        if plan is None:
            plan = plan_chunks(self.layers, shapes, N, D if mode == "forward" else K,
                               x.dtype.itemsize, max_memory)
        if mode == "reverse" and len(plan.example_chunks) == len(plan.direction_chunks) == 1:
            # one chunk: the pulled-back cotangents are the Jacobian, no copy
            y, caches = self._forward_cached(x)
            J = self._reverse_cotangents(caches, shapes, N, 0, K, x.dtype)
            J = np.ascontiguousarray(J).reshape((N,) + s_out + s_in)
            return (y, J) if return_output else J
        J = np.empty((N, K, D), dtype=x.dtype)
        y = np.empty((N,) + s_out, dtype=x.dtype)
        run = self._forward_chunk if mode == "forward" else self._reverse_chunk
        for n0, n1 in plan.example_chunks:
            y[n0:n1], caches = self._forward_cached(x[n0:n1])
            for d0, d1 in plan.direction_chunks:
                if n_win:
                    self._windowed_chunk(caches, shapes, n1 - n0, d0, d1, windows, x.dtype,
                                         J[n0:n1])
                else:
                    run(caches, shapes, n1 - n0, d0, d1, x.dtype, J[n0:n1])
        J = J.reshape((N,) + s_out + s_in)
        return (y, J) if return_output else J

    def _seed(self, d0, d1, size, shape, dtype):
        seed = np.zeros((1, d1 - d0, size), dtype=dtype)
        seed[0, np.arange(d1 - d0), np.arange(d0, d1)] = 1
        return seed.reshape((1, d1 - d0) + shape)

    def _forward_chunk(self, caches, shapes, n, d0, d1, dtype, out):
        # The identity seed is the same for every example, and so is its image through a
        # leading run of linear layers (conv, pad, flatten...): compute it once (batch 1),
        # then broadcast at the first layer whose derivative depends on the example.
        D, K = out.shape[2], out.shape[1]
        dh = self._seed(d0, d1, D, shapes[0], dtype)
        shared = True
        for layer, cache in zip(self.layers, caches):
            if shared and not getattr(layer, "linear", False):
                dh = np.broadcast_to(dh, (n,) + dh.shape[1:])
                shared = False
            dh = layer.jvp(cache, dh)
        dh = dh.reshape(dh.shape[0], d1 - d0, K)
        out[:, :, d0:d1] = dh.transpose(0, 2, 1)

    def _windowed_chunk(self, caches, shapes, n, d0, d1, windows, dtype, out):
        T = local.seed(shapes[0], dtype, d0, d1)
        window = local.Window((1, 1), (1, 1), (0, 0))
        k, slope = len(windows), None
        for i, (layer, cache, nxt) in enumerate(zip(self.layers, caches, windows)):
            if i + 1 < k and local.fuses_into_next(layer, self.layers[i + 1]):
                slope = cache              # applied by the max-pool that follows
                continue
            T = local.jvp(layer, cache, T, window, nxt, n, slope)
            window, slope = nxt, None
        dh = local.to_dense(T, window, shapes[0], n, d0, d1)
        for layer, cache in zip(self.layers[len(windows):], caches[len(windows):]):
            dh = layer.jvp(cache, dh)
        out[:, :, d0:d1] = dh.reshape(n, d1 - d0, out.shape[1]).transpose(0, 2, 1)

    def _reverse_cotangents(self, caches, shapes, n, k0, k1, dtype):
        """Output cotangents k0..k1 of every example pulled back: (n, k1 - k0, *S_in)."""
        K = int(np.prod(shapes[-1]))
        g = np.zeros((n, k1 - k0, K), dtype=dtype)
        g[:, np.arange(k1 - k0), np.arange(k0, k1)] = 1
        return self._pullback(caches, g.reshape((n, k1 - k0) + shapes[-1]))

    def _reverse_chunk(self, caches, shapes, n, k0, k1, dtype, out):
        g = self._reverse_cotangents(caches, shapes, n, k0, k1, dtype)
        out[:, k0:k1, :] = g.reshape(n, k1 - k0, out.shape[2])

    def _trace(self, x, shapes):
        N, D = x.shape[0], int(np.prod(shapes[0]))
        h = x
        dh = np.broadcast_to(self._seed(0, D, D, shapes[0], x.dtype), (N, D) + shapes[0])
        outputs, jacobians = [x], [dh]
        for layer in self.layers:
            h, cache = layer.forward(h)
            dh = layer.jvp(cache, dh)
            outputs.append(h)
            jacobians.append(dh)
        return Trace(self.layers, shapes, outputs, jacobians)

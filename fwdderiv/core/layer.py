"""The layer protocol: ``output_shape``, ``forward``, ``jvp``, ``vjp``, ``param_vjp``.

A layer never stores anything on ``self`` during a call. ``forward`` returns the output
together with a *cache* holding exactly what the derivatives need (the ReLU output, the
max-pool argmax, the conv input columns); ``jvp`` and ``vjp`` take that cache back. A layer
object can therefore be used from several threads or nested calls at once.

Shapes, with ``S`` the per-example input shape and ``S_out`` the output shape:

- ``x``: ``(N, *S)``; ``y``: ``(N, *S_out)``
- tangents ``dx``: ``(N, D, *S)`` -> ``dy``: ``(N, D, *S_out)``, D directions
- cotangents ``gy``: ``(N, K, *S_out)`` -> ``gx``: ``(N, K, *S)``, K cotangents

A layer is math: what it computes and its derivatives, nothing about the layers around
it. Fast paths *across* layers (a ReLU into the max-pool after it, a convolution scattered
from the pool's argmax, BatchNorm folded into the convolution before it, ReLU -> Linear on
the live units) are fusion rules of their own (:mod:`fwdderiv.fusions`), which the planner
(:mod:`fwdderiv.core.plan`) applies; ``net.plan(in_shape).explain()`` says which ran.
A layer declares properties that the engine and the rules read, all optional:

- ``linear = True``: the JVP does not depend on ``x``. A seed shared by the examples
  stays shared (computed once, batch 1) through a run of linear layers, and
  :meth:`~fwdderiv.core.graph.Graph.path_vjp` runs the network's leading linear layers at
  the two ends of a straight path only (the map is affine along it).
- ``pointwise = True``: output entry ``(c, y, x)`` depends on the input at ``(:, y, x)``
  only (activations, per-channel scales, 1x1 maps). A pointwise *linear* layer gets the
  windowed forward mode for free: its ``jvp`` is applied to the channel axis of the
  windowed tangent.
- ``elementwise = True`` with ``slope(cache)``: ``y = f(x)`` entry by entry, with
  ``f'(x)`` returned by ``slope`` (:class:`fwdderiv.core.Elementwise`; ``second_slope``
  for second order). Fusion rules may take its slope into the layer after it.
- ``reshape = True``: the output holds the input's entries in the same order (Flatten,
  Identity); a rule may look through it.
- ``window_rule(window)`` and ``window_jvp(cache, T, window, nxt, n)``: the
  receptive-field window after the layer and the windowed tangent through it
  (:mod:`fwdderiv.core.local`); ``window_rule`` returns None where there is no rule, and
  the windowed run ends there (``explain()`` says so).
- ``kinks(x, tol)``: how many points of the input ``x`` lie within ``tol`` of a point
  where the layer is not differentiable (the kink census of :mod:`fwdderiv.core.kinks`).
- ``uses_kernels = True``: the layer runs Numba kernels, and BLAS is kept
  single-threaded while its network computes (:mod:`fwdderiv.threads`).
- ``work_size(in_shape)``: workspace per example, for the memory planner.
- ``jvp_residual(cache, dx) -> (dy, residual)``: the JVP and whatever ``jvp_grad`` would
  compute again from the same tangent (a convolution's tangent columns); the
  second-order pass hands it back as ``jvp_grad(..., residual=)``.

A layer with parameters (``param_names``) implements ``param_vjp`` and ``jvp_grad``; one
that lacks either is refused when a network is built (:func:`check_layer`).

Layers with several inputs (residual addition, concatenation) set ``multi_input = True``:
``output_shape(*in_shapes)``, ``forward(*xs)``, ``jvp(cache, *dxs)``, and ``vjp(cache,
gy)`` returns one cotangent per input.
"""
import contextlib
import threading

import numpy as np

from ..validation import as_float_array, shape_str


class Layer:
    """Base class of every fwdderiv layer.

    Subclasses implement :meth:`output_shape`, :meth:`forward`, :meth:`jvp` and
    :meth:`vjp`; layers with parameters also implement :meth:`param_vjp` and list their
    parameter names in ``param_names``.

    A layer whose map is linear in its input (up to a bias) sets ``linear = True``: its JVP
    does not depend on the point ``x``, and a Jacobian computed with an identity seed
    through it is the same for every example in the batch (the graph runner uses that).
    """

    #: Names of trainable parameters, as attributes of the layer.
    param_names = ()
    #: Names of non-trainable arrays saved with the model (BatchNorm running statistics).
    buffer_names = ()
    #: True if ``jvp(cache, dx)`` depends on nothing but ``dx`` (a linear map plus bias).
    linear = False
    #: True if output ``(c, y, x)`` depends only on the input at ``(:, y, x)``.
    pointwise = False
    #: True if ``y = f(x)`` entry by entry; ``slope(cache)`` then returns ``f'(x)``.
    elementwise = False
    #: True if the output holds the input's entries in the same order, only reshaped
    #: (Flatten, Identity): fusion rules may look through it.
    reshape = False
    #: True if the layer runs Numba kernels (BLAS then stays single-threaded).
    uses_kernels = False
    #: True if the layer takes several inputs (``forward(*xs)``; see the module doc).
    multi_input = False

    # -- shapes -------------------------------------------------------------------
    def output_shape(self, in_shape):
        """Per-example output shape for per-example input shape ``in_shape``."""
        raise NotImplementedError

    def _input_error(self, expected, got, fix):
        return ValueError(f"{self!r} expected input of shape {expected}, got "
                          f"{shape_str(got)}; {fix}")

    # -- calls --------------------------------------------------------------------
    def __call__(self, x):
        x = as_float_array(x, repr(self))
        try:
            return self.forward(x)[0]
        except ValueError as err:
            raise _with_batch(err, x.shape) from None

    def forward(self, x):
        """Return ``(y, cache)`` for a float batch ``x`` of shape ``(N, *S)``.

        Implementations check the shape with ``self.output_shape(x.shape[1:])``."""
        raise NotImplementedError

    def jvp(self, cache, dx):
        """Push tangents ``dx`` of shape ``(N, D, *S)`` forward; return ``(N, D, *S_out)``."""
        raise NotImplementedError

    def vjp(self, cache, gy):
        """Pull cotangents ``gy`` of shape ``(N, K, *S_out)`` back; return ``(N, K, *S)``."""
        raise NotImplementedError

    def jvp_residual(self, cache, *dxs):
        """The JVP and its *residual*: whatever :meth:`jvp_grad` would compute again from
        the same tangent (a convolution's tangent columns), handed back to it as
        ``jvp_grad(..., residual=)`` by the second-order pass. None here: nothing."""
        return self.jvp(cache, *dxs), None

    def param_vjp(self, cache, gy):
        """Parameter gradients for cotangent ``gy`` of shape ``(N, *S_out)``, summed over N:
        one array per name of ``param_names`` (none for a layer without parameters; a
        layer with parameters must implement this)."""
        if not self.param_names:
            return {}
        raise NotImplementedError(f"{self!r} has parameters ({', '.join(self.param_names)}) "
                                  f"but does not implement param_vjp(cache, gy)")

    def jvp_grad(self, cache, x, dx, gdy):
        """Gradient of ``sum <gdy, J(x) dx>`` with respect to ``x`` and the parameters
        (:mod:`fwdderiv.core.second_order`): ``(gx or None, dict)``. The default serves
        layers that are linear in ``x`` without parameters (the sum does not depend on
        ``x``); any other layer must implement it for second-order uses."""
        if self.linear and not self.param_names:
            return None, {}
        raise NotImplementedError(
            f"{self!r} does not implement jvp_grad(cache, x, dx, gdy), which second-order "
            f"derivatives (Jacobian regularisation) need; see fwdderiv.core.second_order")

    # -- optional fast paths (see the module doc); the defaults decline ------------------
    def window_rule(self, *windows):
        """The receptive-field window after this layer (given the window of each input),
        or None (no windowed rule). A pointwise linear layer keeps the window as it is."""
        return windows[0] if self.pointwise and self.linear and len(windows) == 1 else None

    def window_jvp(self, cache, T, window, nxt, n):
        """The windowed tangent ``T`` of shape ``(N, H, W, C0, Rh, Rw, C)`` through the
        layer (``n`` examples; ``T`` may hold one shared by all). The default serves
        pointwise linear layers: their JVP acts on the channel axis alone."""
        if not (self.pointwise and self.linear):
            raise TypeError(f"{self!r} declares no windowed rule")
        lead, C = T.shape[:-1], T.shape[-1]
        dy = self.jvp(cache, T.reshape(1, -1, C, 1, 1))
        return dy.reshape(lead + (dy.shape[2],))

    def kinks(self, x, tol):
        """Entries of the input ``x`` within ``tol`` of a kink (none by default)."""
        return 0

    # -- parameters and serialisation ----------------------------------------------
    @property
    def params(self):
        """Trainable parameters as a dict of the live arrays (update them in place)."""
        return {name: getattr(self, name) for name in self.param_names}

    @property
    def buffers(self):
        return {name: getattr(self, name) for name in self.buffer_names}

    def get_config(self):
        """Constructor arguments, JSON-serialisable; ``type(self)(**config)`` rebuilds it."""
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


#: What every layer implements.
PROTOCOL = ("output_shape", "forward", "jvp", "vjp")


def check_layer(layer, where):
    """Refuse an object that does not implement the layer protocol, and a layer with
    parameters that lacks ``param_vjp`` or ``jvp_grad`` (training would give it no
    gradient, the Jacobian penalty would drop it): a TypeError naming ``where``."""
    missing = [m for m in PROTOCOL if not callable(getattr(layer, m, None))]
    if missing:
        raise TypeError(f"{where}: {layer!r} is not a layer: it lacks {', '.join(missing)}; "
                        f"subclass fwdderiv.core.Layer")
    if getattr(layer, "param_names", ()):
        cls = type(layer)
        lacking = [m for m in ("param_vjp", "jvp_grad")
                   if not callable(getattr(layer, m, None)) or
                   getattr(cls, m, None) is getattr(Layer, m)]
        if lacking:
            raise TypeError(f"{where}: {cls.__name__} has parameters "
                            f"({', '.join(layer.param_names)}) but does not implement "
                            f"{' and '.join(lacking)}; without "
                            f"{'them' if len(lacking) > 1 else 'it'} training would give its "
                            f"parameters no gradient and the Jacobian penalty would drop "
                            f"them. Implement {' and '.join(lacking)} (see "
                            f"docs/pages/add-a-layer.md)")


def _with_batch(err, shape):
    """Show the real batch size where a shape error says ``got (N, ...)``."""
    msg = str(err)
    if shape and "got (N, " in msg:
        msg = msg.replace("got (N, ", f"got ({shape[0]}, ", 1)
    return type(err)(msg)


def fold(dx):
    """``(N, D, *S)`` -> ``(N*D, *S)``: the direction axis joins the batch (a view)."""
    return dx.reshape((dx.shape[0] * dx.shape[1],) + dx.shape[2:])


def unfold(y, n, d):
    """``(N*D, *S)`` -> ``(N, D, *S)``, the inverse of :func:`fold`."""
    return y.reshape((n, d) + y.shape[1:])


_casts = threading.local()      # .cache: {(id(p), dtype): (p, cast)} during one call


def cast_param(p, dtype):
    """A parameter in the dtype of the input it meets (no copy when they already agree).

    Inside :func:`cast_scope` each parameter is cast once per dtype and reused (a float32
    model asked for a float64 Jacobian uses each weight in several layers' passes)."""
    if p.dtype == dtype:
        return p
    cache = getattr(_casts, "cache", None)
    if cache is None:
        return p.astype(dtype)
    key = (id(p), np.dtype(dtype))
    hit = cache.get(key)
    if hit is None or hit[0] is not p:
        hit = cache[key] = (p, p.astype(dtype))
    return hit[1]


@contextlib.contextmanager
def cast_scope():
    """Reuse parameter casts until the outermost scope ends. Scopes are per call: weights
    changed in place between calls are never served stale."""
    if getattr(_casts, "cache", None) is not None:
        yield
        return
    _casts.cache = {}
    try:
        yield
    finally:
        _casts.cache = None


_loading = threading.local()     # .active: layers are being rebuilt by fwdderiv.load


@contextlib.contextmanager
def no_init():
    """Build layers without drawing initial weights: :func:`init_uniform` returns zeros
    (``fwdderiv.load`` replaces every array with the file's right after)."""
    _loading.active = True
    try:
        yield
    finally:
        _loading.active = False


def init_uniform(rng, shape, fan_in):
    """PyTorch's default initialisation for Linear and Conv2d weights and biases:
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a=sqrt(5) reduces to it).
    Inside :func:`no_init`, zeros: no random numbers are drawn."""
    if getattr(_loading, "active", False):
        return np.zeros(shape, np.float32)
    bound = 1.0 / np.sqrt(fan_in) if fan_in > 0 else 0.0
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


@contextlib.contextmanager
def train_mode(net):
    """Layers that have a training form (``BatchNorm2d``: batch statistics and running
    averages) use it inside the block, as PyTorch's ``model.train()``; the inference form
    is restored after, whatever happens."""
    layers = [layer for layer in net.layers if hasattr(type(layer), "training")]
    for layer in layers:
        layer.training = True
    try:
        yield
    finally:
        for layer in layers:
            layer.__dict__.pop("training", None)

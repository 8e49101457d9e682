"""The layer protocol: ``output_shape``, ``forward``, ``jvp``, ``vjp``, ``param_vjp``.

A layer never stores anything on ``self`` during a call. ``forward`` returns the output
together with a *cache* holding exactly what the derivatives need (the ReLU output, the
max-pool argmax, the conv input columns); ``jvp`` and ``vjp`` take that cache back. A layer
object can therefore be used from several threads or nested calls at once.

Shapes, with ``S`` the per-example input shape and ``S_out`` the output shape:

- ``x``: ``(N, *S)``; ``y``: ``(N, *S_out)``
- tangents ``dx``: ``(N, D, *S)`` -> ``dy``: ``(N, D, *S_out)``, D directions
- cotangents ``gy``: ``(N, K, *S_out)`` -> ``gx``: ``(N, K, *S)``, K cotangents
"""
import contextlib
import threading

import numpy as np

from .._validation import as_float_array, shape_str


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

    def param_vjp(self, cache, gy):
        """Parameter gradients for cotangent ``gy`` of shape ``(N, *S_out)``, summed over N."""
        return {}

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


def init_uniform(rng, shape, fan_in):
    """PyTorch's default initialisation for Linear and Conv2d weights and biases:
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a=sqrt(5) reduces to it)."""
    bound = 1.0 / np.sqrt(fan_in) if fan_in > 0 else 0.0
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)

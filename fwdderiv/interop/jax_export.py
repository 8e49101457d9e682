"""Export a fwdderiv network as a JAX function with the same weights.

Each node becomes a pure function of ``jax.numpy`` arrays: convolutions are
``lax.conv_general_dilated`` (NCHW / OIHW, as PyTorch and fwdderiv store them), max-pooling
is ``lax.reduce_window`` padded with -inf, ReLU is ``jax.nn.relu`` (relu'(0) = 0, as
fwdderiv and PyTorch). The result can be differentiated with ``jax.jacfwd`` /
``jax.jacrev``, so fwdderiv can be checked against JAX's own derivatives (``fwdderiv
check``) and timed against them (``benchmarks/``).

Float64 needs JAX's 64-bit mode (off by default: JAX then turns float64 arrays into
float32). :func:`x64` switches it on for a ``with`` block and restores it afterwards.
"""
import contextlib

import numpy as np


@contextlib.contextmanager
def x64():
    """Context manager: JAX's 64-bit mode (``jax_enable_x64``) on inside the block.

    Arrays made inside keep float64; the previous setting is restored on exit.
    """
    import jax
    if hasattr(jax, "enable_x64"):              # jax >= 0.6: a scoped context manager
        with jax.enable_x64(True):
            yield
        return
    old = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", old)


def _elementwise(jax, jnp):
    """fwdderiv elementwise activation -> function of (x, config)."""
    nn = jax.nn
    sp = lambda x, c: jnp.where(c["beta"] * x > c["threshold"], x,  # noqa: E731
                                nn.softplus(c["beta"] * x) / c["beta"])
    return {
        "ReLU": lambda x, c: nn.relu(x),
        "Sigmoid": lambda x, c: nn.sigmoid(x),
        "Tanh": lambda x, c: jnp.tanh(x),
        "LeakyReLU": lambda x, c: jnp.where(x > 0, x, c.get("negative_slope", 0.01) * x),
        "ELU": lambda x, c: jnp.where(x > 0, x, c.get("alpha", 1.0) * jnp.expm1(x)),
        "GELU": lambda x, c: nn.gelu(x, approximate=c.get("approximate", "none") == "tanh"),
        "SiLU": lambda x, c: x * nn.sigmoid(x),
        "Mish": lambda x, c: x * jnp.tanh(nn.softplus(x)),
        "Softplus": lambda x, c: sp(x, {"beta": 1.0, "threshold": 20.0, **c}),
        "Hardtanh": lambda x, c: jnp.clip(x, c.get("min_val", -1.0), c.get("max_val", 1.0)),
        "ReLU6": lambda x, c: jnp.clip(x, 0.0, 6.0),
        "Hardswish": lambda x, c: x * jnp.clip(x + 3.0, 0.0, 6.0) / 6.0,
        "Identity": lambda x, c: x, "Dropout": lambda x, c: x, "Dropout2d": lambda x, c: x,
    }


class ToJaxError(TypeError):
    """A fwdderiv layer (or one of its options) that :func:`to_jax` cannot translate."""


def _refuse(layer, what):
    return ToJaxError(f"to_jax: cannot translate the layer {layer!r}: {what}; use the "
                      "layers and options listed in fwdderiv.to_jax's docstring")


def _lead(v, ndim):
    """``v`` with ones inserted after the batch axis up to ``ndim`` axes."""
    return v.reshape(v.shape[:1] + (1,) * (ndim - v.ndim) + v.shape[1:])


def _pair(v):
    return tuple(int(a) for a in v)


def _conv_fn(layer, c, p, lax, hi):
    """Conv2d (zero padding by numbers) as lax.conv_general_dilated."""
    if c.get("padding_mode", "zeros") != "zeros" or isinstance(c.get("padding"), str):
        raise _refuse(layer, f"padding {c.get('padding')!r} / padding_mode "
                             f"{c.get('padding_mode')!r} (only zero padding by numbers)")
    W, b = p["weight"], p.get("bias")
    stride, pad, dil = _pair(c["stride"]), _pair(c["padding"]), _pair(c["dilation"])

    def conv(x):
        y = lax.conv_general_dilated(x, W, stride, [(q, q) for q in pad],
                                     rhs_dilation=dil, feature_group_count=c["groups"],
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                     precision=hi)
        return y if b is None else y + b[None, :, None, None]
    return conv


def _pool_fn(layer, kind, c, jnp, lax):
    """MaxPool2d / AvgPool2d (kernel_size, stride, padding only) as lax.reduce_window."""
    extra = {k: v for k, v in c.items() if k not in ("kernel_size", "stride", "padding")}
    if extra or getattr(layer, "dilation", (1, 1)) != (1, 1):
        raise _refuse(layer, f"options {extra or 'dilation'} (only kernel_size, stride, "
                             "padding)")
    k, s, (ph, pw) = _pair(c["kernel_size"]), _pair(c["stride"]), _pair(c["padding"])
    win, strides, pads = (1, 1) + k, (1, 1) + s, ((0, 0), (0, 0), (ph, ph), (pw, pw))
    if kind == "MaxPool2d":
        return lambda x: lax.reduce_window(x, -jnp.inf, lax.max, win, strides, pads)
    return lambda x: lax.reduce_window(x, 0.0, lax.add, win, strides, pads) / (k[0] * k[1])


def _batchnorm_fn(layer, c, p, dtype, jnp):
    """BatchNorm1d/2d in inference form."""
    if getattr(layer, "training", False):
        raise _refuse(layer, "training mode (batch statistics)")
    mean = np.asarray(layer.running_mean, dtype)
    scale = 1.0 / np.sqrt(np.asarray(layer.running_var, dtype) + c.get("eps", 1e-5))
    W, b = p.get("weight"), p.get("bias")

    def bn(x):
        shape = (1, -1) + (1,) * (x.ndim - 2)
        y = (x - jnp.asarray(mean).reshape(shape)) * jnp.asarray(scale).reshape(shape)
        y = y if W is None else y * W.reshape(shape)
        return y if b is None else y + b.reshape(shape)
    return bn


def _node_fn(layer, dtype, jax, jnp, lax):
    """One fwdderiv layer as a function of its input arrays."""
    kind = type(layer).__name__
    c = layer.get_config() if hasattr(layer, "get_config") else {}
    p = {k: jnp.asarray(np.asarray(v, dtype=dtype)) for k, v in layer.params.items()}
    hi = lax.Precision.HIGHEST
    simple = _elementwise(jax, jnp)
    if kind in simple:
        f = simple[kind]
        return lambda x: f(x, c)
    if kind == "Linear":
        W, b = p["weight"], p.get("bias")
        return lambda x: jnp.matmul(x, W.T, precision=hi) + (0 if b is None else b)
    if kind == "Conv2d":
        return _conv_fn(layer, c, p, lax, hi)
    if kind in ("MaxPool2d", "AvgPool2d"):
        return _pool_fn(layer, kind, c, jnp, lax)
    if kind in ("Pad2d", "ZeroPad2d", "ConstantPad2d"):
        left, right, top, bottom = c["padding"]
        widths = ((0, 0), (0, 0), (top, bottom), (left, right))
        return lambda x: jnp.pad(x, widths, constant_values=c.get("value", 0.0))
    if kind in ("BatchNorm2d", "BatchNorm1d"):
        return _batchnorm_fn(layer, c, p, dtype, jnp)
    if kind in ("Softmax", "LogSoftmax"):
        f = jax.nn.softmax if kind == "Softmax" else jax.nn.log_softmax
        return lambda x: f(x, axis=c.get("dim", -1))
    if kind == "Flatten":
        start, end = c.get("start_dim", 1), c.get("end_dim", -1)

        def flatten(x):
            a, e = start % x.ndim, end % x.ndim
            return x.reshape(x.shape[:a] + (-1,) + x.shape[e + 1:])
        return flatten
    if kind == "Add":
        return lambda *xs: sum(xs[1:], xs[0])
    if kind == "Mul":                # per-example shapes broadcast, as fwdderiv's Mul does
        return lambda a, b: _lead(a, b.ndim) * _lead(b, a.ndim)
    if kind == "Concat":
        return lambda *xs: jnp.concatenate(xs, axis=c.get("dim", 1))
    if kind == "Scale":
        return lambda x: x * c["factor"]
    if kind == "Reshape":
        return lambda x: x.reshape((x.shape[0],) + tuple(layer.output_shape(x.shape[1:])))
    if kind == "Slice":
        return lambda x: x[(slice(None),) + layer._index(tuple(x.shape[1:]))]
    if kind == "Pad":
        if any(int(v) < 0 for v in c["pad"]):
            raise _refuse(layer, "negative pads (cropping)")
        return lambda x: jnp.pad(x, [(0, 0)] + layer._widths(x.ndim - 1),
                                 constant_values=c.get("value", 0.0))
    raise _refuse(layer, "no JAX rule for this layer type")


def to_jax(net, dtype="float64"):
    """A JAX function computing a fwdderiv network on batches, weights as constants.

    Parameters
    ----------
    net : Sequential or Graph
        Layers: Linear, Conv2d (zero padding), MaxPool2d and AvgPool2d (kernel_size,
        stride, padding), ReLU, Sigmoid, Tanh, LeakyReLU, ELU, GELU, SiLU, Mish, Softplus,
        Hardtanh, ReLU6, Hardswish, Softmax, LogSoftmax, Flatten, BatchNorm1d/2d
        (inference), Dropout, Identity, Pad2d/ZeroPad2d/ConstantPad2d and the graph joints
        Add, Mul, Concat, Scale, Reshape, Slice, Pad.
    dtype : str or numpy dtype
        Dtype of the weights ("float64" by default). For float64, build and call the
        function inside :func:`x64` (or with ``jax_enable_x64`` set), else JAX computes in
        float32.

    Returns
    -------
    callable
        ``f(x)`` mapping a jax array of shape (N, *S_in) to (N, *S_out).

    Raises
    ------
    ToJaxError
        A layer, or a layer option, without a JAX rule; the message names the layer.

    Examples
    --------
    >>> import jax, numpy as np, fwdderiv as fd
    >>> net = fd.Sequential([fd.Linear(3, 2), fd.Tanh()])
    >>> x = np.ones((1, 3))
    >>> with fd.interop.x64():
    ...     J = jax.vmap(jax.jacfwd(lambda v: fd.to_jax(net)(v[None])[0]))(x)
    >>> bool(np.allclose(np.asarray(J), net.jacobian(x), rtol=1e-12))
    True
    """
    import jax
    import jax.numpy as jnp
    from jax import lax
    if not hasattr(net, "nodes"):
        raise TypeError(f"to_jax: expected a fwdderiv Sequential or Graph, got "
                        f"{type(net).__name__}")
    fns = [_node_fn(layer, dtype, jax, jnp, lax) for _, layer, _ in net.nodes]
    steps = [list(node.inputs) for node in net._nodes]   # 0: the input, k + 1: node k

    def forward(x):
        values = [x]
        for fn, ins in zip(fns, steps):
            values.append(fn(*[values[v] for v in ins]))
        return values[-1]
    return forward

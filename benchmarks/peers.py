"""The methods compared: fwdderiv itself and its PyTorch, JAX and finite-difference peers.

The peers compute the same function with the same weights: :func:`to_torch` and
:func:`to_jax` (:func:`fwdderiv.to_jax`) translate a fwdderiv ``Sequential`` or ``Graph`` node by node, copying the parameters
(PyTorch layout: Conv2d weight (out, in/groups, kh, kw), Linear weight (out, in)) cast to
the benchmark dtype. Each peer differentiates ``f(x) = net(x[None])[0]``, one example
of shape ``S_in`` to its output ``S_out``, vectorised over the batch with vmap, so every
method returns a Jacobian of shape (N, *S_out, *S_in).

A method is a :class:`Method`: ``prepare(x)`` turns the NumPy batch into the framework's
array (not timed), ``run(xp)`` computes the Jacobian and waits for it (timed),
``to_numpy(J)`` brings it back for the agreement check (not timed).
"""
import importlib.util
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from benchmarks import cases

#: Frameworks each method needs (besides NumPy).
METHOD_NEEDS = {
    "fwdderiv-fwd": None, "fwdderiv-rev": None,
    "torch-jacfwd": "torch", "torch-jacrev": "torch",
    "jax-jacfwd": "jax", "jax-jacrev": "jax",
    "fd-central": None,   # PyTorch forward passes, or fwdderiv's NumPy forward without torch
}

#: What each method calls, for the table legend and ``--help``.
METHOD_DOC = {
    "fwdderiv-fwd": 'net.jacobian(x, mode="forward")',
    "fwdderiv-rev": 'net.jacobian(x, mode="reverse")',
    "torch-jacfwd": "torch.func.vmap(torch.func.jacfwd(f))",
    "torch-jacrev": "torch.func.vmap(torch.func.jacrev(f))",
    "jax-jacfwd": "jax.jit(jax.vmap(jax.jacfwd(f)))",
    "jax-jacrev": "jax.jit(jax.vmap(jax.jacrev(f)))",
    "fd-central": "central differences, batched forward passes (torch, else fwdderiv/NumPy)",
}
METHODS = tuple(METHOD_DOC)

#: Central-difference step per dtype: about eps ** (1/3), a power of two.
FD_STEP = {"float32": 2.0 ** -8, "float64": 2.0 ** -17}


def available(framework):
    """True if ``framework`` ("torch", "jax", "fwdderiv") can be imported."""
    return importlib.util.find_spec(framework) is not None


@dataclass
class Method:
    """One way of computing the batch Jacobian (see the module docstring)."""
    name: str
    prepare: Callable
    run: Callable
    to_numpy: Callable
    detail: str = ""
    compile: Callable = lambda xp: None   # ahead-of-time compile for xp's shape; ms or None
    label: str = ""                        # table name when it differs from ``name``


def _pair(v):
    if isinstance(v, (tuple, list)):
        return tuple(int(a) for a in v) if len(v) > 1 else (int(v[0]),) * 2
    return (int(v), int(v))


def _conv_cfg(layer):
    return dict(stride=_pair(getattr(layer, "stride", 1)),
                padding=_pair(getattr(layer, "padding", 0)),
                dilation=_pair(getattr(layer, "dilation", 1)),
                groups=int(getattr(layer, "groups", 1)))


def _pool_cfg(layer):
    k = _pair(layer.kernel_size)
    stride = getattr(layer, "stride", None)
    return k, (k if stride is None else _pair(stride)), _pair(getattr(layer, "padding", 0))


def _pad4(padding):
    """Pad2d padding as (left, right, top, bottom), the order of torch's ZeroPad2d."""
    if isinstance(padding, (tuple, list)) and len(padding) == 4:
        return tuple(int(p) for p in padding)
    ph, pw = _pair(padding)
    return (pw, pw, ph, ph)


def _unsupported(layer, target):
    return TypeError(
        f"benchmarks: cannot translate layer {type(layer).__name__} to {target}; expected "
        "Linear, Conv2d, ReLU, Sigmoid, Tanh, Softmax, LogSoftmax, Flatten, MaxPool2d, "
        "AvgPool2d, Pad2d, Dropout, BatchNorm2d or a graph joint (Add, Mul, Concat, Scale, "
        "Reshape, Slice, Pad); add a rule in benchmarks/peers.py")


def to_torch(net, dtype):
    """A torch.nn.Sequential computing ``net`` on batches (N, *S_in), weights copied.

    Parameters
    ----------
    net : fwdderiv.Sequential
    dtype : str or numpy dtype
        "float32" or "float64"; parameters are cast to it and do not require grad.
    """
    import torch
    from torch import nn

    tdt = getattr(torch, np.dtype(dtype).name)
    mods = []
    for layer in net.layers:
        kind = type(layer).__name__
        p = {k: torch.from_numpy(np.array(v, dtype=dtype)) for k, v in layer.params.items()}
        if kind == "Linear":
            W = p["weight"]
            m = nn.Linear(W.shape[1], W.shape[0], bias="bias" in p)
        elif kind == "Conv2d":
            W, cfg = p["weight"], _conv_cfg(layer)
            m = nn.Conv2d(W.shape[1] * cfg["groups"], W.shape[0], tuple(W.shape[2:]),
                          bias="bias" in p, **cfg)
        elif kind == "BatchNorm2d":
            m = nn.BatchNorm2d(len(layer.running_mean), eps=float(getattr(layer, "eps", 1e-5)))
            m.running_mean = torch.from_numpy(np.array(layer.running_mean, dtype=dtype))
            m.running_var = torch.from_numpy(np.array(layer.running_var, dtype=dtype))
        elif kind in ("MaxPool2d", "AvgPool2d"):
            k, s, pad = _pool_cfg(layer)
            m = (nn.MaxPool2d(k, s, pad) if kind == "MaxPool2d"
                 else nn.AvgPool2d(k, s, pad, count_include_pad=True))
        elif kind == "Pad2d":
            m = nn.ZeroPad2d(_pad4(layer.padding))
        elif kind in _TORCH_OPS:
            m = _TorchOp(_TORCH_OPS[kind](layer))
        else:
            simple = {"ReLU": nn.ReLU, "Sigmoid": nn.Sigmoid, "Tanh": nn.Tanh,
                      "Softmax": lambda: nn.Softmax(dim=-1),
                      "LogSoftmax": lambda: nn.LogSoftmax(dim=-1),
                      "Flatten": lambda: nn.Flatten(1), "Dropout": nn.Identity}
            if kind not in simple:
                raise _unsupported(layer, "PyTorch")
            m = simple[kind]()
        m = m.to(tdt)
        with torch.no_grad():
            for name, value in p.items():
                getattr(m, name).copy_(value)
        mods.append(m)
    model = (nn.Sequential(*mods) if type(net).__name__ == "Sequential"
             else _TorchGraph(mods, [node.inputs for node in net._nodes])).eval()
    for q in model.parameters():
        q.requires_grad_(False)
    return model


#: Graph joints and tensor ops: fwdderiv layer -> a function of the input tensors.
_TORCH_OPS = {
    "Add": lambda layer: lambda *xs: sum(xs[1:], xs[0]),
    "Mul": lambda layer: lambda a, b: a * b,
    "Concat": lambda layer: lambda *xs: __import__("torch").cat(xs, dim=layer.dim),
    "Scale": lambda layer: lambda x: x * layer.factor,
    "Reshape": lambda layer: lambda x: x.reshape((x.shape[0],) + layer.output_shape(x.shape[1:])),
    "Slice": lambda layer: lambda x: x[(slice(None),) + layer._index(tuple(x.shape[1:]))],
    "Pad": lambda layer: lambda x: __import__("torch").nn.functional.pad(x, layer.pad,
                                                                         value=layer.value),
}


def _torch_module():
    from torch import nn

    class TorchOp(nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn

        def forward(self, *xs):
            return self.fn(*xs)

    class TorchGraph(nn.Module):
        """Evaluates the nodes in order; value 0 is the input, value k+1 node k's output."""

        def __init__(self, mods, inputs):
            super().__init__()
            self.mods, self.inputs = nn.ModuleList(mods), inputs

        def forward(self, x):
            values = [x]
            for m, ins in zip(self.mods, self.inputs):
                values.append(m(*[values[v] for v in ins]))
            return values[-1]
    return TorchOp, TorchGraph


def _TorchOp(fn):
    return _torch_module()[0](fn)


def _TorchGraph(mods, inputs):
    return _torch_module()[1](mods, inputs)


def to_jax(net, dtype):
    """A JAX function computing ``net`` on batches (N, *S_in): :func:`fwdderiv.to_jax`.

    Turns on ``jax_enable_x64`` for the whole benchmark process, so that float64 inputs
    placed with ``jax.device_put`` stay float64.
    """
    import jax
    jax.config.update("jax_enable_x64", True)
    from fwdderiv.interop.jax_export import to_jax as _to_jax
    return _to_jax(net, dtype)


def fd_central(forward, x, h, chunk, xp=np):
    """Central-difference Jacobian of a batched forward function.

    Parameters
    ----------
    forward : callable
        Batched function (M, *S_in) -> (M, *S_out) of array module ``xp``.
    x : array of shape (N, *S_in)
    h : float
        Step. The divisor is the step actually taken, ``(x + h) - (x - h)`` in the
        working dtype, which removes the rounding of the step itself.
    chunk : int
        Perturbed inputs (each sign) per forward pass; bounds the memory.
    xp : module
        ``numpy`` or ``torch``.

    Returns
    -------
    J : array of shape (N, *S_out, *S_in)
    """
    N, S = x.shape[0], tuple(x.shape[1:])
    D = int(np.prod(S))
    flat = x.reshape(N, D)
    J = None
    total = N * D
    for start in range(0, total, chunk):
        rows = xp.arange(start, min(total, start + chunk))
        n, i = rows // D, rows % D
        plus, minus = flat[n], flat[n]          # advanced indexing copies
        plus[xp.arange(len(rows)), i] += h
        minus[xp.arange(len(rows)), i] -= h
        step = plus[xp.arange(len(rows)), i] - minus[xp.arange(len(rows)), i]
        yp = forward(plus.reshape((-1,) + S))
        ym = forward(minus.reshape((-1,) + S))
        dy = (yp - ym).reshape(len(rows), -1) / step[:, None]
        if J is None:
            K = dy.shape[1]
            J = xp.zeros((N, K, D), dtype=dy.dtype)
            out_shape = tuple(yp.shape[1:])
        J[n, :, i] = dy
    return J.reshape((N,) + out_shape + S)


def make_method(name, net, dtype, stats, have):
    """Build the :class:`Method` called ``name`` for ``net`` at ``dtype``.

    Parameters
    ----------
    name : str
        One of :data:`METHODS`.
    net : fwdderiv.Sequential
    dtype : str
        "float32" or "float64".
    stats : dict
        :func:`benchmarks.cases.model_stats` of ``net`` (chunk size of central differences).
    have : set of str
        Frameworks treated as installed (``fd-central`` uses torch only if present).
    """
    ident = lambda a: a  # noqa: E731
    if name in ("fwdderiv-fwd", "fwdderiv-rev"):
        mode = "forward" if name == "fwdderiv-fwd" else "reverse"
        return Method(name, lambda x: np.ascontiguousarray(x, dtype=dtype),
                      lambda x: net.jacobian(x, mode=mode), ident)
    if name in ("torch-jacfwd", "torch-jacrev"):
        import torch
        from torch.func import jacfwd, jacrev, vmap
        model = to_torch(net, dtype)
        jac = vmap((jacfwd if name == "torch-jacfwd" else jacrev)(lambda xi: model(xi[None])[0]))
        return Method(name, lambda x: torch.from_numpy(np.array(x, dtype=dtype)), jac,
                      lambda J: J.detach().numpy(),
                      f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if name in ("jax-jacfwd", "jax-jacrev"):
        import jax
        forward = to_jax(net, dtype)
        transform = jax.jacfwd if name == "jax-jacfwd" else jax.jacrev
        jac = jax.jit(jax.vmap(transform(lambda xi: forward(xi[None])[0])))
        compiled = {}

        def compile_for(xj):
            if xj.shape in compiled:
                return None
            t0 = time.perf_counter()
            compiled[xj.shape] = jac.lower(xj).compile()
            return (time.perf_counter() - t0) * 1e3

        def run(xj):
            return compiled.get(xj.shape, jac)(xj).block_until_ready()
        return Method(name, lambda x: jax.device_put(np.array(x, dtype=dtype)), run,
                      np.asarray, f"jax {jax.__version__}", compile_for)
    if name == "fd-central":
        h = FD_STEP[np.dtype(dtype).name]
        chunk = cases.fd_chunk_rows(stats, np.dtype(dtype).itemsize)
        if "torch" in have:
            import torch
            model = to_torch(net, dtype)

            def run(x):
                with torch.inference_mode():
                    return fd_central(model, x, h, chunk, xp=torch)
            return Method(name, lambda x: torch.from_numpy(np.array(x, dtype=dtype)), run,
                          lambda J: J.numpy(), f"torch forward passes, h=2^{int(np.log2(h))}",
                          label="fd-central/torch")
        return Method(name, lambda x: np.array(x, dtype=dtype),
                      lambda x: fd_central(net, x, h, chunk, xp=np), ident,
                      f"fwdderiv NumPy forward passes (torch missing), h=2^{int(np.log2(h))}",
                      label="fd-central/numpy")
    raise ValueError(f"benchmarks: unknown method {name!r}; expected one of {list(METHODS)}")

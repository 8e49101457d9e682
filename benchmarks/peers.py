"""The methods compared: fwdderiv itself and its PyTorch, JAX and finite-difference peers.

The peers compute the same function with the same weights: :func:`to_torch`
(:func:`fwdderiv.to_torch`) and :func:`to_jax` (:func:`fwdderiv.to_jax`) translate a
fwdderiv ``Sequential`` or ``Graph`` node by node with every layer option, copying the
parameters cast to the benchmark dtype. Each peer differentiates ``f(x) = net(x[None])[0]``, one example
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


def to_torch(net, dtype):
    """A ``torch.nn.Module`` computing ``net`` on batches (N, *S_in): :func:`fwdderiv.to_torch`
    (every layer option the package supports), cast to ``dtype``, in eval mode, with
    parameters that do not require grad.

    Parameters
    ----------
    net : fwdderiv.Sequential or fwdderiv.Graph
    dtype : str or numpy dtype
        "float32" or "float64".
    """
    import torch

    import fwdderiv as fd

    model = fd.to_torch(net).to(getattr(torch, np.dtype(dtype).name)).eval()
    for q in model.parameters():
        q.requires_grad_(False)
    return model


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

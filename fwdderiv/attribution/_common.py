"""What every attribution method shares: targets, baselines, memory-bounded gradients.

A network is used only through ``forward``, ``vjp``, ``jacobian`` and ``output_shape``
(plus ``nodes``/``shapes`` when present, for a sharper memory estimate).
"""
import numbers

import numpy as np

from ..classifier import check_images, check_labels, n_outputs
from ..config import DEFAULT_MAX_MEMORY
from ..threads import holding_blas
from ..validation import as_float_array, shape_str

#: ``target="all"``: every class, results ``(N, K, *S)``.
ALL = "all"


def held(attribute):
    """Run an ``attribute`` method with BLAS held to one thread while its network runs
    Numba kernels (:func:`fwdderiv.threads.held_for`, as each network call does).
    Without it, the method's own NumPy products between network calls (integrated
    gradients' weighted sum over the path points) start OpenBLAS's threads, which keep
    spinning on the cores that the next call's kernels need (docs/pages/attribution.md
    has the timings)."""
    return holding_blas(attribute, net_of=lambda method: method.net)


class Attribution:
    """Base of the attribution methods: holds the network (Captum's ``forward_func``).
    Subclasses decorate ``attribute`` with :func:`held`."""

    def __init__(self, net):
        for m in ("forward", "vjp", "output_shape"):
            if not callable(getattr(net, m, None)):
                raise TypeError(
                    f"{type(self).__name__} expected a fwdderiv network (with forward, vjp "
                    f"and output_shape), got {type(net).__name__}; wrap layers in "
                    "fd.Sequential([...])")
        self.net = net

    @property
    def forward_func(self):
        """The network, under Captum's name."""
        return self.net

    def has_convergence_delta(self):
        return False

    @property
    def multiplies_by_inputs(self):
        return False

    def _where(self):
        return f"{type(self).__name__}.attribute"


def prepare(method, inputs, target):
    """``(x, K, t)``: the checked inputs, the number of outputs and the target (an int
    array of shape (N,), or :data:`ALL`)."""
    where = method._where()
    x = check_images(inputs, where, "inputs")
    K = n_outputs(method.net, x.shape[1:], where)
    return x, K, resolve_target(target, x.shape[0], K, where)


def resolve_target(target, n, K, where):
    """Captum's targets: an int for every example, one int per example, None when the
    output has one element; and ``"all"``."""
    if isinstance(target, str):
        if target == ALL:
            return ALL
        raise ValueError(f"{where} expected target as a class index, one index per "
                         f"example, None or 'all', got {target!r}")
    if target is None:
        if K == 1:
            return np.zeros(n, dtype=np.intp)
        raise ValueError(
            f"{where} needs a target for a network with {K} outputs, got None; pass "
            "target=<class index>, one class per example, or target='all'")
    if isinstance(target, (list, tuple)):
        target = np.asarray(target)
    return check_labels(target, n, K, where, "target")


def expand_target(t, k):
    """The target of an input repeated ``k`` times per example (``np.repeat`` order)."""
    return t if isinstance(t, str) else np.repeat(t, k)


def select(out, t):
    """``out[n, t_n]`` (shape (N,)), or ``out`` itself for :data:`ALL` (shape (N, K))."""
    return out if isinstance(t, str) else out[np.arange(len(t)), t]


def baselines_like(baselines, x, where):
    """Baselines broadcast to ``x.shape``: None (zeros), a number, or an array of shape
    ``S``, ``(1, *S)`` or ``(N, *S)``."""
    if baselines is None:
        return np.zeros_like(x)
    if isinstance(baselines, numbers.Real) and not isinstance(baselines, bool):
        b = np.full_like(x, baselines)
    else:
        b = as_float_array(np.asarray(baselines), where, "baselines")
        if b.shape == x.shape[1:]:
            b = b[None]
        if b.ndim != x.ndim or b.shape[1:] != x.shape[1:] or b.shape[0] not in (1, len(x)):
            raise ValueError(
                f"{where} expected baselines as a number or an array of shape "
                f"{shape_str(x.shape)}, {shape_str((1,) + x.shape[1:])} or "
                f"{shape_str(x.shape[1:])} to match the inputs, got {shape_str(b.shape)}; "
                "one baseline per example, or one for all")
        b = np.broadcast_to(b, x.shape).astype(x.dtype)
    if not np.isfinite(b).all():
        raise ValueError(f"{where} expected finite baselines, got NaN or infinite values")
    return np.ascontiguousarray(b)


def budget(max_memory, where):
    if max_memory is None:
        return DEFAULT_MAX_MEMORY
    if not isinstance(max_memory, numbers.Real) or max_memory <= 0:
        raise ValueError(f"{where} expected max_memory as a positive number of bytes or "
                         f"None, got {max_memory!r}")
    return int(max_memory)


def _size(shape):
    return int(np.prod(shape, dtype=np.int64))


def costs(net, in_shape, itemsize):
    """``(per_example, per_direction)``: bytes of one example's forward caches, and of
    one tangent/cotangent direction of one example while it passes a node (its inputs,
    output and declared workspace ``layer.work_size``). Computed from the public
    ``net.nodes`` and ``net.shapes`` of a Graph or Sequential; for other networks a
    generous guess from the input size."""
    nodes, shapes = getattr(net, "nodes", None), getattr(net, "shapes", None)
    if isinstance(nodes, list) and callable(shapes):
        values = shapes(tuple(in_shape))
        index = {"input": 0}
        per_dir, per_example = _size(values[-1]), _size(values[0])
        for k, (name, layer, inputs) in enumerate(nodes):
            index[name] = k + 1
            s_ins = [values[index[v]] for v in inputs]
            work = layer.work_size(s_ins[0]) if hasattr(layer, "work_size") else 0
            size_out = _size(values[k + 1])
            per_dir = max(per_dir, sum(_size(s) for s in s_ins) + size_out + work)
            per_example += 2 * size_out + work
        return per_example * itemsize, per_dir * itemsize
    d = _size(in_shape) * itemsize
    return 32 * d, 8 * d


def forward(net, x, max_memory):
    """``net.forward(x)`` in example chunks whose caches fit ``max_memory``."""
    per_example, _ = costs(net, x.shape[1:], x.dtype.itemsize)
    n = max(1, max_memory // per_example)
    return np.concatenate([net.forward(x[i:i + n]) for i in range(0, len(x), n)])


def one_hot(t, n, K, dtype):
    """Cotangents selecting the targets: (n, K, K) identities for :data:`ALL`, else
    (n, 1, K) with a one at each example's target."""
    if isinstance(t, str):
        return np.broadcast_to(np.eye(K, dtype=dtype), (n, K, K))
    gy = np.zeros((n, 1, K), dtype=dtype)
    gy[np.arange(n), 0, t] = 1
    return gy


def gradients(net, x, t, K, max_memory):
    """Gradients of the targeted outputs: ``(N, *S)`` for an index array ``t``, the
    Jacobian ``(N, K, *S)`` for :data:`ALL`.

    One target per example: one ``vjp`` with a one-hot cotangent. All targets: reverse
    mode (K one-hot cotangents per example) when K <= D, the number of input features,
    else forward mode (D tangents per example); examples and classes are split into
    chunks whose work and result fit ``max_memory``.
    """
    N, S, itemsize = x.shape[0], x.shape[1:], x.dtype.itemsize
    D = int(np.prod(S))
    per_example, per_dir = costs(net, S, itemsize)
    if isinstance(t, str) and K > D:
        per_point = per_example + D * (per_dir + K * itemsize)
        n = max(1, max_memory // per_point)
        return np.concatenate([net.jacobian(x[i:i + n], mode="forward", max_memory=max_memory)
                               for i in range(0, N, n)])
    k_all = K if isinstance(t, str) else 1
    # directions per example (classes), then examples, so that one vjp fits
    k = max(1, min(k_all, (max_memory - per_example) // (per_dir + D * itemsize)))
    n = max(1, min(N, max_memory // (per_example + k * (per_dir + D * itemsize))))
    out = np.empty((N, k_all) + S, dtype=x.dtype)
    for i in range(0, N, n):
        xc = x[i:i + n]
        for c0 in range(0, k_all, k):
            c1 = min(c0 + k, k_all)
            rows = one_hot(t if isinstance(t, str) else t[i:i + n], len(xc), K, x.dtype)
            out[i:i + n, c0:c1] = net.vjp(xc, np.ascontiguousarray(rows[:, c0:c1]))[1]
    return out if isinstance(t, str) else out[:, 0]

"""The Jacobian driver: the work of ``Graph.jacobian`` and ``Graph.path_vjp`` cut to a
memory budget and spread over the cores.

Forward mode carries the identity seed in direction chunks (the windowed region once per
example chunk, :mod:`fwdderiv.core.local`); reverse mode pulls one-hot cotangents back,
splitting whole passes between the cores when they are large
(:data:`SPLIT_PASSES_FROM`). The plans and the interpreter do the rest
(:mod:`fwdderiv.core.plan`, :mod:`fwdderiv.core.interpret`).
"""
import math
import os

import numpy as np

from .. import threads
from ..config import DEFAULT_MAX_MEMORY
from ..validation import as_float_array, check_int, check_tangent, shape_str
from . import local
from .layer import cast_scope
from .memory import plan_chunks, plan_windowed
from .plan import FORWARD, REVERSE, Plan
from .trace import Trace

#: A reverse Jacobian whose pull-backs write at least this many values (examples x rows x
#: the elements of all the network's values) splits whole passes between the cores
#: (:func:`reverse`); below it the layers' own parallel kernels do as well or better
#: (measurements: docs/pages/performance.md).
SPLIT_PASSES_FROM = 4_000_000


def _size(shape):
    return math.prod(int(s) for s in shape)


def jacobian(net, x, mode="forward", max_memory=None, return_output=False,
             intermediates=False, windowed=True, out=None):
    """The body of :meth:`fwdderiv.Graph.jacobian` (see there)."""
    name = f"{net._kind}.jacobian"
    if mode not in ("forward", "reverse"):
        raise ValueError(f"{name}: mode must be 'forward' or 'reverse', got {mode!r}")
    x, shapes = net._input(x)
    stretch = max_memory is None          # the default budget grows to one direction's need
    max_memory = budget(max_memory, name)
    if intermediates:
        if mode != "forward" or out is not None:
            raise ValueError(f"{name}: intermediates=True needs mode='forward' and no out=")
        return trace(net, x, shapes, windowed)
    N, s_in, s_out = x.shape[0], shapes[0], shapes[-1]
    D, K = _size(s_in), _size(s_out)
    if out is not None:
        check_out(out, (N,) + s_out + s_in, name)
    if N == 0 or D == 0 or K == 0:             # nothing to differentiate: no work
        J = np.zeros((N,) + s_out + s_in, x.dtype) if out is None else out
        return (net.forward(x), J) if return_output else J
    steps, itemsize = memory_steps(net, shapes), x.dtype.itemsize
    if out is None:
        check_result_fits(N * K * D * itemsize, (N,) + s_out + s_in, name)
    windows, plan = [], None
    if mode == "forward" and windowed:
        windows, plan = windows_for_budget(net, shapes, N, itemsize, max_memory, steps)
    if plan is None:
        plan = plan_chunks(steps, shapes, N, D if mode == "forward" else K, itemsize,
                           max_memory, name, stretch)
    if mode == "reverse" and len(plan.example_chunks) == len(plan.direction_chunks) == 1:
        y, J = reverse(net, x, K, s_out, sum(_size(s) for s in shapes))
        J = np.ascontiguousarray(J).reshape((N,) + s_out + s_in)
        if out is not None:
            out[...] = J
            J = out
        return (y, J) if return_output else J
    J = np.empty((N, K, D), dtype=x.dtype) if out is None else Sink(out, s_out, s_in)
    y = np.empty((N,) + s_out, dtype=x.dtype)
    for n0, n1 in plan.example_chunks:
        n = n1 - n0
        y[n0:n1], caches = net._primal(x[n0:n1], keep=True)
        # the windows hold every direction whatever the seed (a chunk's seed only
        # zeroes the others), so they run once per example chunk; the planner already
        # counts them per example, whatever the directions (plan_windowed)
        carry = None
        if windows and len(plan.direction_chunks) > 1:
            carry = net._tangents(caches=caches, n=n, hold=True,
                                   **seed(s_in, 0, D, x.dtype, windows, n))
        for d0, d1 in plan.direction_chunks:
            if mode == "reverse":
                g = net._pull(caches, identity(n, d0, d1, s_out, x.dtype))
                J[n0:n1, d0:d1, :] = g.reshape(n, d1 - d0, D)
                continue
            _, dh = net._tangents(caches=caches, n=n, carry=carry,
                                   **seed(s_in, d0, d1, x.dtype, windows, n))
            dh = dh.reshape(dh.shape[0], d1 - d0, K)      # batch 1 if still shared
            J[n0:n1, :, d0:d1] = dh.transpose(0, 2, 1)
    J = J.reshape((N,) + s_out + s_in) if out is None else out
    return (y, J) if return_output else J


def reverse(net, x, K, s_out, values):
    """``F(x)`` and the K one-hot cotangents of every example pulled back, (N, K,
    *S_in), in one chunk. Inside a BLAS-limited scope with Numba kernels that may run
    concurrently, the work is cut into one part per core, each run on its own thread
    with its kernels and products on one core (:func:`fwdderiv.threads.alone`):
    the examples when there are enough, else the rows of one forward pass. The cores
    then split whole passes instead of each layer, which saves a hand-off per layer
    (see SPLIT_PASSES_FROM), and the numbers differ by float rounding only.
    ``values``: the elements of all the network's values per example, a measure of
    a row's work."""
    N, dtype = x.shape[0], x.dtype
    fits = net.uses_kernels and N * K * values >= SPLIT_PASSES_FROM and \
        threads.kernels_run_concurrently()
    # a layer in its training form (batch statistics) couples the examples: one pass
    per_example = not any(getattr(node.layer, "training", False) for node in net._nodes)
    examples = threads.ranges(N, N * K * values, 1) if fits and per_example else [(0, N)]
    pieces = {}
    if len(examples) > 1:
        def piece(n0, n1):
            with threads.alone(), cast_scope():
                y, caches = net._primal(x[n0:n1], keep=True)
                pieces[n0] = y, net._pull(caches, identity(n1 - n0, 0, K, s_out, dtype))

        threads.run(examples, piece)
        return tuple(np.concatenate([pieces[n0][i] for n0, _ in examples])
                     for i in (0, 1))
    y, caches = net._primal(x, keep=True)
    rows = threads.ranges(K, N * K * values, 1) if fits else [(0, K)]
    if len(rows) == 1:
        return y, net._pull(caches, identity(N, 0, K, s_out, dtype))

    def piece(k0, k1):
        with threads.alone(), cast_scope():
            pieces[k0] = net._pull(caches, identity(N, k0, k1, s_out, dtype))

    threads.run(rows, piece)
    return y, np.concatenate([pieces[k0] for k0, _ in rows], axis=1)


def path_vjp(net, start, end, alphas, weights, gy, steps=None):
    """The body of :meth:`fwdderiv.Graph.path_vjp` (see there)."""
    where = f"{net._kind}.path_vjp"
    a, shapes = net._input(start)
    b = as_float_array(end, where, "end")
    if b.shape != a.shape:
        raise ValueError(f"{where} expected end of the shape of start, "
                         f"{shape_str(a.shape)}, got {shape_str(b.shape)}")
    alphas = np.asarray(alphas, dtype=np.float64).reshape(-1)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != alphas.shape or not len(alphas):
        raise ValueError(f"{where} expected alphas and weights as two 1-d arrays of one "
                         f"length >= 1, got shapes {shape_str(alphas.shape)} and "
                         f"{shape_str(weights.shape)}")
    b = b.astype(a.dtype, copy=False)
    g = check_tangent(np.empty((len(a),) + shapes[-1], a.dtype), gy, where, name="gy",
                      what="cotangent")
    T = len(alphas)
    steps = T if steps is None else check_int(steps, "steps", where, minimum=1)
    # a layer in its training form (batch statistics) is not affine per example
    head = linear_head(net)
    p = next((k for k in range(head) if getattr(net._nodes[k].layer, "training", False)), head)
    if p:
        h0 = net._primal(a, stop=p)[0]
        h1, head_caches = net._primal(b, stop=p, keep=True)
    else:
        h0, h1 = a, b
    diff, lead = h1 - h0, (-1,) + (1,) * h0.ndim
    # the cotangent of every point of a pass, step-major like the points
    rows = np.ascontiguousarray(np.broadcast_to(
        g[None], (min(steps, T),) + g.shape)).reshape((-1,) + g.shape[1:])
    total = None
    for s0 in range(0, T, steps):
        s1 = min(s0 + steps, T)
        points = alphas[s0:s1].astype(a.dtype).reshape(lead) * diff[None]
        points += h0[None]
        _, caches = net._primal(points.reshape((-1,) + h0.shape[1:]), start=p,
                                 keep=True)
        cot = net._pull(caches, rows[:(s1 - s0) * len(a)], stop=p,
                         reduce=weights[s0:s1])
        if total is None:
            total = cot
        else:
            total += cot
    return net._pull(head_caches, total, top=p) if p else total


def linear_head(net):
    """The number of leading linear nodes, each value read by the next node only: a path's
    points are affine through them (:func:`path_vjp` runs them at the path's ends)."""
    nodes, uses, head = net._nodes, net._uses, 0
    while head < len(nodes) - 1 and nodes[head].inputs == (head,) and uses[head] == 1 \
            and getattr(nodes[head].layer, "linear", False) \
            and not getattr(nodes[head].layer, "multi_input", False):
        head += 1
    return head


def memory_steps(net, shapes):
    """For the memory planner: per node, its layer, input shapes, output shape, and
    the elements of other values alive across it (residual branches)."""
    sizes = [_size(s) for s in shapes]
    last = {}
    for k, node in enumerate(net._nodes):
        for v in node.inputs:
            last[v] = k
    steps, alive = [], 0              # alive: values made before node k, read after it
    for k, node in enumerate(net._nodes):
        alive += sizes[k] if last.get(k, -1) > k - 1 and k > 0 else 0
        ins = set(node.inputs)
        here = alive - sum(sizes[v] for v in ins if v > 0 and last[v] > k - 1)
        steps.append((node.layer, [shapes[v] for v in node.inputs], shapes[k + 1],
                      here + (sizes[0] if 0 not in ins and last.get(0, -1) > k else 0)))
        alive -= sum(sizes[v] for v in ins if v > 0 and last[v] == k)
    return steps


def windows_for_budget(net, shapes, N, itemsize, max_memory, steps=None):
    """The longest windowed prefix whose windows fit the budget, and its chunk plan (None
    if no window fits). Windows grow with depth: on a large input the last ones can
    outweigh dense direction chunks."""
    steps = memory_steps(net, shapes) if steps is None else steps
    windows = windows_of(net, shapes)
    while windows:
        plan = plan_windowed(steps, shapes, N, itemsize, max_memory, len(windows),
                             window_elements(net, shapes, windows))
        if plan is not None:
            return windows, plan
        windows = windows[:-1]
    return [], None


def plan(net, in_shape, mode, dtype, batch, max_memory, windowed):
    """The body of :meth:`fwdderiv.Graph.plan` (see there)."""
    name = f"{net._kind}.plan"
    if mode not in (FORWARD, REVERSE):
        raise ValueError(f"{name}: mode must be 'forward' or 'reverse', got {mode!r}")
    shapes = net.shapes(in_shape)
    if mode == REVERSE:
        steps = net._reverse_plan(len(net._nodes)).steps
        return Plan(steps, net._view(), REVERSE, shapes)
    if not windowed:
        return Plan(net._forward_plan(0).steps, net._view(0), FORWARD, shapes,
                    "windowed=False: every node runs dense")
    n_all = len(windows_of(net, shapes))
    windows = windows_for_budget(net, shapes, batch, np.dtype(dtype).itemsize,
                                 budget(max_memory, name))[0]
    return Plan(net._forward_plan(len(windows)).steps, net._view(len(windows)), FORWARD,
                shapes, window_end(net, shapes, len(windows), n_all))


def window_end(net, shapes, n_win, n_all):
    """Where the windowed run ends and why, for :meth:`fwdderiv.Graph.plan`'s explain."""
    nodes = net._nodes
    if len(shapes[0]) != 3:
        return f"no windowed run: the input {shapes[0]} is not an image (C, H, W)"
    if n_win >= len(nodes):
        return "every node runs windowed"
    node = nodes[n_win]
    where = f"the windowed run ends before node {node.name!r} ({type(node.layer).__name__})"
    if n_win < n_all:
        return f"{where}: the memory budget holds the windows of {n_win} nodes"
    wins = [local.Window((1, 1), (1, 1), (0, 0))] + windows_of(net, shapes)
    rule = getattr(node.layer, "window_rule", None)
    ins = [wins[v] for v in node.inputs if v < len(wins)]
    nxt = None
    if rule is not None and len(ins) == len(node.inputs):
        nxt = rule(*ins) if getattr(node.layer, "multi_input", False) else rule(ins[0])
    if nxt is None:
        return (f"{where}: it has no window rule (window_rule returns None), so it and "
                f"every node after it run on dense tangents; give it a window rule to keep "
                f"the windowed run going")
    return (f"{where}: its {nxt.size[0]}x{nxt.size[1]} window would cover most of the "
            f"{shapes[0][1]}x{shapes[0][2]} input, where dense tangents cost no more")


def windows_of(net, shapes):
    """The windows of the longest prefix of nodes with windowed rules."""
    return local.plan_graph([(n.layer, n.inputs) for n in net._nodes], shapes)

def window_elements(net, shapes, windows):
    """Peak elements per example of the windowed region (for the memory planner):
    every windowed value alive while a node runs, plus twice its output (a conv's
    per-offset copy and product)."""
    C0 = shapes[0][0]
    size = [_size(shapes[0])] + [_size(shapes[k + 1]) * C0 * w.size[0] * w.size[1]
                                 for k, w in enumerate(windows)]
    last = {}
    for k, node in enumerate(net._nodes[:len(windows)]):
        for v in node.inputs:
            last[v] = k
    peak = 0
    for k in range(len(windows)):
        alive = sum(size[v] for v in range(k + 1) if last.get(v, len(windows)) >= k)
        peak = max(peak, alive + 2 * size[k + 1])
    return peak


def seed(s_in, d0, d1, dtype, windows, n):
    """Keyword arguments of ``Graph._tangents`` for the identity seed of directions d0..d1:
    a dense seed shared by every example, or a windowed one with its converter."""
    if windows:
        return {"dx": local.seed(s_in, dtype, d0, d1), "windows": windows,
                "dense": local.Densify(tuple(s_in), n, d0, d1)}
    return {"dx": identity(1, d0, d1, s_in, dtype)}


def trace(net, x, shapes, windowed):
    N, D = x.shape[0], _size(shapes[0])
    windows = windows_of(net, shapes) if windowed else []
    outputs, tangents = [x], [np.broadcast_to(identity(1, 0, D, shapes[0], x.dtype),
                                              (N, D) + shapes[0])]

    def record(k, h, dh):
        outputs.append(h)
        tangents.append(np.broadcast_to(dh, (N,) + dh.shape[1:]))

    net._tangents(n=N, x=x, record=record, **seed(shapes[0], 0, D, x.dtype, windows, N))
    return Trace(net.layers, shapes, outputs, tangents,
                 names=[n.name for n in net._nodes])


def identity(n, k0, k1, shape, dtype):
    """Unit vectors k0..k1 of a flat (*shape) space: (n, k1 - k0, *shape)."""
    K = _size(shape)
    e = np.zeros((n, k1 - k0, K), dtype=dtype)
    e[:, np.arange(k1 - k0), np.arange(k0, k1)] = 1
    return e.reshape((n, k1 - k0) + tuple(shape))


class Sink:
    """The caller's ``out`` array of shape (N, *S_out, *S_in) seen as (N, K, D), the
    layout the driver fills: ``sink[n0:n1, k0:k1, d0:d1] = values`` with one of the two
    flat ranges whole. Each write goes to ``out`` as a few rectangular blocks
    (:func:`flat_blocks`), so any array-like with slice assignment works (a
    ``numpy.memmap``, a Zarr array); a C-contiguous ndarray is written through an
    (N, K, D) view directly."""

    def __init__(self, out, s_out, s_in):
        self.out, self.s_out, self.s_in = out, tuple(s_out), tuple(s_in)
        self.K, self.D = _size(s_out), _size(s_in)
        flat = isinstance(out, np.ndarray) and out.flags.c_contiguous
        self.view = out.reshape(out.shape[0], self.K, self.D) if flat else None

    def __setitem__(self, index, values):
        n, k, d = index
        if self.view is not None:
            self.view[n, k, d] = values
            return
        values = np.broadcast_to(values, (n.stop - n.start,) + values.shape[1:])
        if (k.start, k.stop) == (None, None):            # columns d0..d1, every output
            for idx, a, b in flat_blocks(self.s_in, d.start, d.stop):
                part = values[:, :, a - d.start:b - d.start]
                self.out[(n,) + (slice(None),) * len(self.s_out) + idx] = part.reshape(
                    (len(part),) + self.s_out + _block_shape(idx))
        else:                                            # rows k0..k1, every input
            for idx, a, b in flat_blocks(self.s_out, k.start, k.stop):
                part = values[:, a - k.start:b - k.start, :]
                self.out[(n,) + idx + (slice(None),) * len(self.s_in)] = part.reshape(
                    (len(part),) + _block_shape(idx) + self.s_in)


def _block_shape(idx):
    return tuple(s.stop - s.start for s in idx)


def flat_blocks(shape, a, b):
    """Cover the row-major flat range ``a..b`` of an array of ``shape`` with rectangular
    blocks (at most two per axis): yields ``(index, a_i, b_i)``, ``index`` a tuple of
    slices, one per axis, holding exactly the flat range ``a_i..b_i``, in order."""
    if a >= b:
        return
    if not shape:
        yield (), a, b
        return
    inner = _size(shape[1:])
    i0, r0 = divmod(a, inner)
    i1, r1 = divmod(b, inner)
    if i0 == i1 or (i1 == i0 + 1 and r1 == 0 and r0):   # inside one row of axis 0
        for idx, p, q in flat_blocks(shape[1:], r0, r1 if i0 == i1 else inner):
            yield (slice(i0, i0 + 1),) + idx, i0 * inner + p, i0 * inner + q
        return
    if r0:                                               # the end of a first row
        yield from flat_blocks(shape, a, (i0 + 1) * inner)
        i0 += 1
    if i1 > i0:                                          # whole rows
        yield (slice(i0, i1),) + tuple(slice(0, s) for s in shape[1:]), i0 * inner, \
            i1 * inner
    if r1:                                               # the start of a last row
        yield from flat_blocks(shape, i1 * inner, b)


def check_out(out, shape, name):
    """``out`` must be an array-like of the Jacobian's shape and a floating dtype that
    takes slice assignment."""
    got = getattr(out, "shape", None)
    if got is None or not hasattr(out, "__setitem__"):
        raise TypeError(f"{name}: out= must be an array-like with a shape and slice "
                        f"assignment (an ndarray, a numpy.memmap, a Zarr array), got "
                        f"{type(out).__name__}")
    if tuple(got) != tuple(shape):
        raise ValueError(f"{name}: out= must have the Jacobian's shape (N, *S_out, *S_in) = "
                         f"{tuple(shape)}, got {tuple(got)}")
    dtype = getattr(out, "dtype", None)
    if dtype is not None and np.dtype(dtype).kind != "f":
        raise TypeError(f"{name}: out= must have a floating dtype, got {dtype}; e.g. "
                        "np.lib.format.open_memmap('J.npy', mode='w+', dtype=np.float64, "
                        f"shape={tuple(shape)})")


def physical_memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_result_fits(nbytes, shape, name):
    """A Jacobian larger than the machine's memory fails before any work, with the size
    it needs and the way out (``max_memory`` bounds the work, not the result; ``out=``
    an array on disk holds the result instead)."""
    total = physical_memory()
    if total is not None and nbytes > total:
        raise ValueError(
            f"{name}: the Jacobian of shape {shape} needs {nbytes / 2**30:.1f} GiB, more than "
            f"this machine's {total / 2**30:.1f} GiB of memory; pass out= an array on disk "
            f"to fill it chunk by chunk, e.g. out=np.lib.format.open_memmap('J.npy', "
            f"mode='w+', dtype=np.float{8 * nbytes // _size(shape)}, shape={shape}), pass "
            f"fewer examples at a time, or take vjp/jvp products instead of the full matrix")


def budget(max_memory, name):
    if max_memory is None:
        return DEFAULT_MAX_MEMORY
    if isinstance(max_memory, bool) or not isinstance(max_memory, (int, np.integer)):
        raise TypeError(f"{name}: max_memory must be a positive int (bytes), got "
                        f"{max_memory!r}; e.g. max_memory=256 * 2**20")
    if max_memory <= 0:
        raise ValueError(f"{name}: max_memory must be a positive int (bytes), got "
                         f"{max_memory}; e.g. max_memory=256 * 2**20")
    return int(max_memory)

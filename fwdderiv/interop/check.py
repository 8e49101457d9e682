"""Compare another framework's input Jacobian with fwdderiv's float64 reference and name
the disagreement (the engine of ``fwdderiv check``)."""
import numpy as np

#: Neighbouring points sampled to attribute an entry to a kink (ReLU at 0, max-pool ties).
KINK_SAMPLES = 8
#: Relative size of those perturbations (to the largest |x|): small enough that the smooth
#: part of the Jacobian moves far less than any tolerance, large enough to move an input
#: sitting exactly on a kink to either side.
KINK_STEP = 1e-11


#: Default tolerance relative to max|J|, by the dtype of the Jacobian checked. Float64
#: agrees to rounding, and 1e-8 leaves room for deep networks. Float32 rounding alone
#: moves a deep network's Jacobian by 1e-7 to 1e-6 of max|J| (PyTorch's and fwdderiv's
#: alike on ResNet-18 and Wide-ResNet-16-2), so a float32 Jacobian is held to 1e-5.
TOLERANCE = {np.dtype(np.float64): 1e-8, np.dtype(np.float32): 1e-5}


#: A float32 Jacobian checked without ``tol`` is held to this many times the rounding that
#: fwdderiv's own float32 Jacobian of the same network and inputs shows (its largest error
#: relative to max|J|), within the bounds below: the network's conditioning sets what a
#: float32 evaluation can reach, and a real error of 1e-3 still fails.
FLOAT32_ROUNDING_FACTOR = 4
FLOAT32_TOL_BOUNDS = (TOLERANCE[np.dtype(np.float32)], 1e-4)


def float32_tolerance(ours, ref, scale, kinked):
    """The tolerance for a float32 Jacobian of this network at these inputs, measured from
    fwdderiv's own float32 Jacobian ``ours`` (see :data:`FLOAT32_ROUNDING_FACTOR`) on the
    entries no kink moves (``kinked`` False): its rounding, not its decisions."""
    lo, hi = FLOAT32_TOL_BOUNDS
    err = np.abs(ours - ref)[~kinked]
    rounding = float(err.max()) / scale if err.size else 0.0
    return min(max(lo, FLOAT32_ROUNDING_FACTOR * rounding), hi)


def default_tolerance(dtype):
    """The tolerance :func:`compare` uses for a Jacobian of ``dtype`` when none is given."""
    return TOLERANCE.get(np.dtype(dtype), TOLERANCE[np.dtype(np.float64)])


#: An activation's input within this distance of its kink may land on the other side in a
#: float32 forward pass: float32 rounds a sum of a few hundred terms of size 1 by up to
#: about 1e-5 (one such unit moved a Wide-ResNet-16-2's float32 Jacobian by 3.5e-2 of
#: max|J|, PyTorch's and fwdderiv's alike; docs/pages/conventions.md).
FLOAT32_KINK_TOL = 1e-5
#: At most this many such units are decided the other way, one at a time, to explain a
#: float32 Jacobian (:func:`float32_kink_band`).
MAX_FLIPS = 64


def _jac(net, x):
    return net.jacobian(np.asarray(x, np.float64))


def float32_kink_band(net, x, ref):
    """Per entry, the smallest and largest value of the float64 Jacobian at ``x`` with one
    unit near a kink decided the other way, over every unit within
    :data:`FLOAT32_KINK_TOL` of a kink (at most :data:`MAX_FLIPS`): the Jacobians a
    float32 pass may legitimately give. Returns ``(lo, hi, units)``, ``units`` the number
    of such units."""
    from ..core.kinks import near_kinks
    flips = near_kinks(net, x, FLOAT32_KINK_TOL)
    lo, hi = ref.copy(), ref.copy()
    if not flips:
        return lo, hi, 0
    n, s_in = x.shape[0], x.shape[1:]
    s_out = ref.shape[1:ref.ndim - len(s_in)]
    k_out = int(np.prod(s_out, dtype=np.int64))
    seed = np.broadcast_to(np.eye(k_out).reshape((1, k_out) + tuple(s_out)),
                           (n, k_out) + tuple(s_out))
    _, caches = net.forward_cached(x)
    for k, idx, slope in flips[:MAX_FLIPS]:
        flipped = list(caches)
        flipped[k] = caches[k].copy()
        flipped[k].reshape(-1)[idx] = slope
        J = net.pullback(flipped, seed).reshape(ref.shape)
        np.minimum(lo, J, out=lo)
        np.maximum(hi, J, out=hi)
    return lo, hi, len(flips)


def _with_last(net, layer):
    """The network followed by one more layer (a Graph node)."""
    from .. import Graph, Sequential
    if isinstance(net, Sequential):
        return Sequential(list(net.layers) + [layer])
    nodes = list(net.nodes)
    return Graph(nodes + [("__check_extra__", layer, nodes[-1][0])])


def _without_last(net):
    from .. import Graph, Sequential
    if isinstance(net, Sequential):
        return Sequential(list(net.layers)[:-1]) if len(net.layers) > 1 else None
    nodes = list(net.nodes)
    return Graph(nodes[:-1]) if len(nodes) > 1 else None


def _close(a, b, tol, scale):
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= tol * scale))


def kink_band(net, x, ref):
    """Per entry, the smallest and largest value the Jacobian takes at points within
    ``KINK_STEP`` of ``x`` (random sign perturbations): at a kink the one-sided derivatives
    differ, so any value between them is a legitimate answer of another framework."""
    rng = np.random.default_rng(0)
    lo, hi = ref.copy(), ref.copy()
    step = KINK_STEP * max(1.0, float(np.abs(x).max()))
    for _ in range(KINK_SAMPLES):
        J = _jac(net, x + step * rng.choice([-1.0, 1.0], size=x.shape))
        np.minimum(lo, J, out=lo)
        np.maximum(hi, J, out=hi)
    return lo, hi


#: Points of each finite-difference segment [x - h e_i, x + h e_i] where the band of
#: :func:`segment_band` samples the derivative, as fractions of h.
SEGMENT_POINTS = (-1.0, -0.5, -1e-6, 1e-6, 0.5, 1.0)


def segment_band(net, x, ref, steps, chunk=256):
    """Per entry (j, i), the smallest and largest d F_j / d x_i along the segment that a
    central difference in x_i spans, ``x + t e_i`` for t in ``SEGMENT_POINTS`` x h_i.

    A central difference is the mean of that derivative over the segment, so where the
    segment crosses kinks (ReLU inputs changing sign, max-pool winners changing) it lies
    between the sampled extremes, up to the finite difference's own error.

    Parameters
    ----------
    net : Sequential or Graph
    x : ndarray of shape (N, *S_in), float64
    ref : ndarray of shape (N, *S_out, *S_in)
        The Jacobian at ``x`` (included in the band).
    steps : ndarray of shape (N, *S_in)
        The finite difference's step per input.
    chunk : int
        Inputs perturbed per network call.

    Returns
    -------
    lo, hi : ndarrays shaped like ``ref``
    """
    n, s_in = x.shape[0], x.shape[1:]
    d = int(np.prod(s_in))
    k = ref.size // (n * d)
    lo, hi = ref.reshape(n, k, d).copy(), ref.reshape(n, k, d).copy()
    flat, h = x.reshape(n, d), np.asarray(steps, np.float64).reshape(n, d)
    for d0 in range(0, d, max(1, chunk // max(n, 1))):
        idx = np.arange(d0, min(d, d0 + max(1, chunk // max(n, 1))))
        m = len(idx)
        seed = np.zeros((n, m, 1, d))
        seed[:, np.arange(m), 0, idx] = 1.0
        for t in SEGMENT_POINTS:
            xp = np.repeat(flat[:, None, :], m, axis=1)
            xp[:, np.arange(m), idx] += t * h[:, idx]
            _, dy = net.jvp(xp.reshape((n * m,) + s_in), seed.reshape((n * m, 1) + s_in))
            col = np.asarray(dy, np.float64).reshape(n, m, k).transpose(0, 2, 1)
            lo[:, :, idx] = np.minimum(lo[:, :, idx], col)
            hi[:, :, idx] = np.maximum(hi[:, :, idx], col)
    return lo.reshape(ref.shape), hi.reshape(ref.shape)


def compare(net, x, other, tol=None, fd_steps=None, scale=None):
    """Compare ``other`` (N, *S_out, *S_in) with the reference Jacobian of ``net`` at ``x``.

    Kinks at ``x`` explain a disagreement (:func:`kink_band`). When ``other`` is a central
    finite difference, pass its steps ``fd_steps`` (N, *S_in): the kinks its segments
    cross explain disagreements as well (:func:`segment_band`). A float32 ``other`` is
    held to a float32 tolerance (:func:`float32_tolerance`, unless ``tol`` is given) and set
    beside fwdderiv's own float32 Jacobian (:func:`float32_sides`), so the report says
    which float32 Jacobian is off the float64 reference. Errors and tolerances are
    relative to ``scale``, by default the largest |J| of the reference at ``x``; a shard
    of a larger comparison passes the largest over all its inputs
    (:func:`fwdderiv.distributed.compare`).

    Returns
    -------
    dict
        ``ok``, ``verdict`` (a named mistake or None), ``max_abs``, ``max_rel``, counts of
        entries beyond tolerance explained and unexplained by kinks, the worst errors per
        output (with the input position) and the positions of unexplained entries (first
        100); for a float32 ``other``, ``float32`` (:func:`float32_sides`). Errors are
        scaled by the largest |J| of the reference (``scale``).
    """
    x = np.asarray(x, np.float64)
    other = np.asarray(other)
    measured = tol is None and other.dtype == np.float32
    tol = default_tolerance(other.dtype) if tol is None else tol
    ref = _jac(net, x)
    n, s_in = x.shape[0], x.shape[1:]
    s_out = ref.shape[1:ref.ndim - len(s_in)]
    if scale is None:
        scale = float(np.abs(ref).max()) if ref.size else 0.0
    scale = max(float(scale), np.finfo(np.float64).tiny)
    report = {"shape": list(ref.shape), "tolerance": tol, "scale": scale,
              "dtype": str(other.dtype)}
    if other.shape != ref.shape:
        swapped = (n,) + tuple(s_in) + tuple(s_out)
        verdict = "transposed layout" if other.shape == swapped else "wrong shape"
        return {**report, "ok": False, "verdict": verdict, "other_shape": list(other.shape),
                "message": f"expected the layout (N, *S_out, *S_in) = {ref.shape} (as "
                           f"torch.func.vmap(jacfwd)), got {other.shape}"}
    other64 = other.astype(np.float64)
    ours = net.jacobian(x.astype(np.float32)).astype(np.float64) \
        if other.dtype == np.float32 else None
    err = np.abs(other64 - ref)
    off = bool((err > tol * scale).any()) or (
        ours is not None and bool((np.abs(ours - ref) > tol * scale).any()))
    lo, hi = kink_band(net, x, ref) if off else (ref, ref)
    near = 0
    if off and ours is not None:            # units a float32 pass may decide either way
        flo, fhi, near = float32_kink_band(net, x, ref)
        lo, hi = np.minimum(lo, flo), np.maximum(hi, fhi)
    if measured:                            # never below the default: bands exist if needed
        tol = report["tolerance"] = float32_tolerance(ours, ref, scale, hi > lo)
        report["tolerance_rule"] = (f"{FLOAT32_ROUNDING_FACTOR} x the rounding of fwdderiv's "
                                    f"own float32 Jacobian away from kinks, within "
                                    f"{FLOAT32_TOL_BOUNDS}")
    beyond = err > tol * scale
    if fd_steps is not None and beyond.any():
        slo, shi = segment_band(net, x, ref, fd_steps)
        lo, hi = np.minimum(lo, slo), np.maximum(hi, shi)
    explained = _explained(other64, beyond, lo, hi, tol * scale, ours is not None)
    unexplained = beyond & ~explained
    report.update({"max_abs": float(err.max()), "max_rel": float(err.max()) / scale,
                   "beyond_tolerance": int(beyond.sum()), "kink_explained": int(explained.sum()),
                   "unexplained": int(unexplained.sum()),
                   "unexplained_positions": [[int(v) for v in p]
                                             for p in np.argwhere(unexplained)[:100]],
                   "worst_per_output": _worst(err, ref, other64, scale, n, s_in, s_out)})
    if ours is not None:
        report["float32"] = {**float32_sides(ref, {"other": other64, "fwdderiv": ours}, lo,
                                             hi, tol, scale), "units_near_kinks": near}
    report["ok"] = report["unexplained"] == 0
    report["verdict"] = None if report["ok"] else _diagnose(net, x, ref, other, other64,
                                                          unexplained, tol, scale, s_in, s_out,
                                                          report.get("float32"))
    return report


def _explained(J, beyond, lo, hi, atol, rounding=False):
    """Entries beyond tolerance that lie inside a kink band, within tolerance; the band
    must be wider than the tolerance, unless the Jacobian carries its own ``rounding``
    (float32: a kink's move plus rounding may pass the tolerance together)."""
    wide = (hi - lo > 0) if rounding else (hi - lo > atol)
    return beyond & wide & (J >= lo - atol) & (J <= hi + atol)


def _worst(err, ref, other64, scale, n, s_in, s_out):
    """Per output, the largest error over examples and inputs, with where it is."""
    k_out = int(np.prod(s_out, dtype=np.int64))
    flat = err.reshape(n, k_out, -1)
    worst = []
    for j in range(k_out):
        e = flat[:, j]
        m, i = np.unravel_index(int(e.argmax()), e.shape)
        r = float(ref.reshape(n, k_out, -1)[m, j, i])
        worst.append({"output": [int(v) for v in np.unravel_index(j, s_out)],
                      "example": int(m), "input": [int(v) for v in np.unravel_index(i, s_in)],
                      "abs_error": float(e[m, i]), "rel_error": float(e[m, i]) / scale,
                      "reference": r, "other": float(other64.reshape(n, k_out, -1)[m, j, i])})
    return worst


def float32_sides(ref, jacobians, lo, hi, tol, scale):
    """Which float32 Jacobians are off the float64 reference ``ref``.

    ``jacobians`` maps a side's name (``"other"``, ``"fwdderiv"``) to its float32 Jacobian
    (as float64). For each side: ``max_rel`` (largest error relative to max|J|), the
    entries beyond ``tol`` and how many of them the kink band ``lo``..``hi`` explains, and
    ``off_reference``: True when some entry beyond tolerance is not explained by a kink.
    ``disagree_max_rel``: the two float32 Jacobians' largest difference.
    """
    sides = {}
    for side, J in jacobians.items():
        err = np.abs(J - ref)
        beyond = err > tol * scale
        explained = _explained(J, beyond, lo, hi, tol * scale, rounding=True)
        sides[side] = {"max_rel": float(err.max()) / scale,
                       "beyond_tolerance": int(beyond.sum()),
                       "kink_explained": int(explained.sum()),
                       "off_reference": bool((beyond & ~explained).any())}
    a, b = jacobians.values()
    sides["disagree_max_rel"] = float(np.abs(a - b).max()) / scale
    return sides


def float32_verdict(sides):
    """One sentence on whose float32 Jacobian to trust, from :func:`float32_sides`."""
    other, ours = sides["other"], sides["fwdderiv"]
    if other["off_reference"] and not ours["off_reference"]:
        return (f"this float32 Jacobian is off the float64 reference ({other['max_rel']:.1e} "
                f"of max|J|) while fwdderiv's float32 is not ({ours['max_rel']:.1e}): trust "
                f"fwdderiv's float32")
    if other["off_reference"] and ours["off_reference"]:
        return (f"both float32 Jacobians are off the float64 reference (this one "
                f"{other['max_rel']:.1e}, fwdderiv's {ours['max_rel']:.1e} of max|J|): this "
                f"network is sensitive to float32 rounding; compare in float64")
    return None


def _diagnose(net, x, ref, other, other64, unexplained, tol, scale, s_in, s_out,
              sides=None):
    """Name the classic mistake behind unexplained disagreements."""
    n = x.shape[0]
    d_in, d_out = int(np.prod(s_in)), int(np.prod(s_out))
    if d_in == d_out:
        t = np.swapaxes(other64.reshape(n, d_out, d_in), 1, 2).reshape(ref.shape)
        if _close(t, ref, tol, scale):
            return "transposed layout"
    if other.dtype == np.float32 or np.array_equal(other64.astype(np.float32), other64):
        if np.all(np.abs(other64 - ref) <= TOLERANCE[np.dtype(np.float32)] * scale):
            return "float32 rounding presented as float64" if other.dtype != np.float32 else \
                f"float32 rounding beyond tolerance {tol:g} (a float32 Jacobian is held " \
                f"to {TOLERANCE[np.dtype(np.float32)]:g} by default)"
    if sides is not None and float32_verdict(sides):
        return float32_verdict(sides)
    last = net.layers[-1] if len(net.layers) else None
    name = type(last).__name__
    if name in ("Softmax", "LogSoftmax"):
        logits = _without_last(net)
        if logits is not None and _close(_jac(logits, x), other64, 1e-6, scale):
            return "logits vs probabilities (you differentiated the logits; the model " \
                   "outputs probabilities)"
    else:
        from .. import Softmax
        probs = _with_last(net, Softmax())
        J = _jac(probs, x)
        if _close(J, other64, 1e-6, max(float(np.abs(J).max()), 1e-300)):
            return "probabilities vs logits (you differentiated softmax probabilities; the " \
                   "model outputs logits)"
    count = int(unexplained.sum())
    if count <= 3:
        return "one wrong entry" if count == 1 else f"{count} wrong entries"
    return "unexplained disagreement"

"""What the Jacobian benchmark runs: models, inputs, FLOP counts and memory estimates.

Every model is rebuilt from its name and keyword arguments (the zoo builders are
deterministic given ``seed``), so a worker subprocess gets the same weights as the parent.
"""
import numpy as np

#: Main-table models: name -> (zoo builder name, keyword arguments, per-example input shape).
MODELS = {
    "lenet5": ("lenet5", {}, (1, 32, 32)),
    "convnet": ("mnist_convnet", {}, (1, 28, 28)),
    "mlp": ("mlp", {}, (1, 28, 28)),
    # a Graph: He et al.'s CIFAR-10 ResNet-20, shortcut options A and B
    "resnet20a": ("resnet20", {"shortcut": "A"}, (3, 32, 32)),
    "resnet20b": ("resnet20", {"shortcut": "B"}, (3, 32, 32)),
}

#: Input sides of the ``--scaling`` side sweep and hidden-layer counts of the depth sweep.
SCALING_SIDES = (28, 56, 112)
SCALING_DEPTHS = (1, 2, 3, 4)


def build_model(name, seed=0):
    """Build a benchmark model by name.

    Parameters
    ----------
    name : str
        A key of :data:`MODELS`, ``"smallconv<side>"`` (side sweep) or ``"mlp<depth>"``
        (depth sweep, ``depth`` hidden layers of width 256).
    seed : int
        Weight seed handed to the builders.

    Returns
    -------
    net : fwdderiv.Sequential
    in_shape : tuple of int
        Per-example input shape (no batch axis).
    """
    import fwdderiv as fd

    if name in MODELS:
        builder, kwargs, in_shape = MODELS[name]
        return getattr(fd.models, builder)(seed=seed, **kwargs), in_shape
    if name.startswith("smallconv"):
        side = int(name[len("smallconv"):])
        return small_convnet(side, seed=seed), (1, side, side)
    if name.startswith("mlp") and name[3:].isdigit():
        depth = int(name[3:])
        return fd.models.mlp(hidden=(256,) * depth, seed=seed), (1, 28, 28)
    raise ValueError(
        f"benchmark model {name!r} is unknown; expected one of {sorted(MODELS)}, "
        "'smallconv<side>' or 'mlp<depth>'")


def small_convnet(side, seed=0):
    """The side-sweep convnet: conv 4@3, relu, pool2, conv 8@3, relu, pool2, fc10, softmax.

    Parameters
    ----------
    side : int
        Height and width of the (1, side, side) input; at least 10.
    seed : int
        Weight seed.
    """
    import fwdderiv as fd

    s = ((side - 2) // 2 - 2) // 2
    return fd.Sequential([
        fd.Conv2d(1, 4, 3, seed=seed), fd.ReLU(), fd.MaxPool2d(2),
        fd.Conv2d(4, 8, 3, seed=seed + 1), fd.ReLU(), fd.MaxPool2d(2),
        fd.Flatten(), fd.Linear(8 * s * s, 10, seed=seed + 2), fd.Softmax(),
    ])


def make_input(in_shape, batch, seed=0):
    """Benchmark input: uniform [0, 1) float32 of shape (batch, *in_shape).

    float64 cases use ``x.astype(float64)`` of this very array, so the float32 and
    float64 runs and the float64 reference see identical input values.
    """
    rng = np.random.default_rng(seed)
    return rng.random((batch,) + tuple(in_shape), dtype=np.float32)


def layer_shapes(net, in_shape):
    """Per-example (in_shape, out_shape) of every layer (node), in order; a node with
    several inputs reports its first."""
    values = net.shapes(in_shape)
    return [(values[node.inputs[0]], values[k + 1]) for k, node in enumerate(net._nodes)]


def model_stats(net, in_shape):
    """Sizes and FLOP counts of one model (per example).

    The FLOP count is that of a dense forward-mode Jacobian: for every direction, each
    linear layer does its multiply-adds on the tangent, 2 FLOP each:

    - Conv2d: ``2 * Cout * Cin/groups * kh * kw * Hout * Wout`` per direction,
    - Linear: ``2 * out * in`` per direction,
    - everything else (ReLU masks, pooling gathers, softmax, reshapes) is not counted:
      it is O(size) per direction, against O(size * fan-in) for the linear layers.

    Returns
    -------
    dict
        ``D`` (input size = directions of forward mode), ``K`` (output size = directions
        of reverse mode), ``flop_per_direction`` (``L``), ``flop_first_layer`` (the first
        linear layer's share of ``L``: work a closed-form first layer avoids),
        ``act_elems`` (input plus every layer output, elements), ``im2col_max``
        (largest conv unfold, elements), ``layers`` (per-layer rows).
    """
    rows = []
    for layer, (s_in, s_out) in zip(net.layers, layer_shapes(net, in_shape)):
        kind = type(layer).__name__
        W = layer.params.get("weight") if layer.params else None
        flop = im2col = 0
        if kind == "Conv2d":
            hw = int(np.prod(s_out[1:]))
            flop = 2 * int(W.size) * hw
            im2col = s_in[0] * W.shape[2] * W.shape[3] * hw   # Cin * kh * kw * Hout * Wout
        elif kind == "Linear":
            flop = 2 * int(W.size)
        rows.append({"layer": kind, "in": list(s_in), "out": list(s_out), "flop": flop,
                     "im2col": im2col})
    flops = [r["flop"] for r in rows]
    first = next((f for f in flops if f), 0)
    D = int(np.prod(in_shape))
    K = int(np.prod(rows[-1]["out"])) if rows else D
    return {
        "D": D, "K": K,
        "flop_per_direction": int(sum(flops)),
        "flop_first_layer": int(first),
        "act_elems": D + int(sum(np.prod(r["out"]) for r in rows)),
        "im2col_max": int(max([r["im2col"] for r in rows] + [0])),
        "layers": rows,
    }


def method_flop(method, stats, batch):
    """FLOPs of one Jacobian of a batch, counted for the method's own algorithm.

    Forward mode (fwdderiv-fwd, torch-jacfwd, jax-jacfwd): ``(D + 1) * L`` per example
    (D tangent directions plus the primal). Reverse mode: ``(K + 1) * L``. Central
    differences: ``2 * D * L`` (two forward passes per input feature).
    """
    L = stats["flop_per_direction"]
    kind = METHOD_KIND[method]
    per = {"forward": (stats["D"] + 1) * L, "reverse": (stats["K"] + 1) * L,
           "fd": 2 * stats["D"] * L}[kind]
    return per * batch


#: Algorithm behind each method name.
METHOD_KIND = {
    "fwdderiv-fwd": "forward", "fwdderiv-rev": "reverse",
    "torch-jacfwd": "forward", "torch-jacrev": "reverse",
    "jax-jacfwd": "forward", "jax-jacrev": "reverse",
    "fd-central": "fd",
}

#: Rows of the finite-difference chunk: perturbed inputs per forward pass are limited so
#: that their activations take about this many bytes.
FD_CHUNK_BYTES = 256 * 2**20


def fd_chunk_rows(stats, itemsize):
    """Perturbed inputs per forward pass in central differences (at least 1)."""
    return max(1, int(FD_CHUNK_BYTES // (stats["act_elems"] * itemsize)))


def estimate_peak_bytes(method, stats, batch, itemsize):
    """Rough peak memory of one Jacobian call above the process baseline, or None.

    vmap(jacfwd) keeps every layer's tangent for all ``B * D`` directions; PyTorch's
    float64 CPU convolution and XLA's convolution also unfold their input (im2col) for
    all of them. The factors were fitted on LeNet-5 and the MNIST convnet at B=4 (torch
    float32 within 1.0-2.1x of the measured peak, float64 0.75-1.0x; JAX 0.8-2.3x).
    The benchmark skips a case without starting it only when this estimate is above
    twice the limit; otherwise it measures one example first and extrapolates (see
    :mod:`benchmarks.runner`). fwdderiv's methods return None: the engine bounds itself
    (``max_memory``).
    """
    B, D, K = batch, stats["D"], stats["K"]
    act, unfold = stats["act_elems"], stats["im2col_max"]
    result = B * K * D * itemsize
    if method == "torch-jacfwd":
        per_dir = 1.2 * act if itemsize == 4 else 0.8 * (act + unfold)
        return int(B * D * itemsize * per_dir) + result
    if method == "jax-jacfwd":
        return int(0.8 * B * D * itemsize * (act + unfold)) + result
    if method in ("torch-jacrev", "jax-jacrev"):
        return int(B * K * itemsize * (act + unfold)) + result
    if method == "fd-central":
        return 3 * FD_CHUNK_BYTES + result
    return None


def gib(nbytes):
    """Bytes as a short GiB string."""
    return "n/a" if nbytes is None else f"{nbytes / 2**30:.1f} GiB"


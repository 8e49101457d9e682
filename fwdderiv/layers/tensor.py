"""Layers that rearrange or rescale values: constant scaling, reshapes, strided slices and
constant padding of any axis (the pieces of ``forward`` methods that call tensor ops:
``0.5 * x``, ``x.view(...)``, ``x[:, :, ::2, ::2]``, ``F.pad``)."""
import numbers

import numpy as np

from .. import schema
from ..registry import Example, register_layer
from . import exchange
from ._util import finite_real
from ..core import local
from ..core.layer import Layer
from ..validation import shape_str


class Scale(Layer):
    r"""Multiplication by a constant, :math:`y = c\,x`, :math:`dy = c\,dx`."""

    linear = True
    pointwise = True

    def __init__(self, factor):
        self.factor = finite_real(factor, "factor", "Scale")

    def get_config(self):
        return {"factor": self.factor}

    def output_shape(self, in_shape):
        return tuple(in_shape)

    def forward(self, x):
        return x * x.dtype.type(self.factor), None

    def jvp(self, cache, dx):
        return dx * dx.dtype.type(self.factor)

    vjp = jvp


class Shift(Layer):
    r"""Addition of a constant, :math:`y = x + c`, :math:`dy = dx`: the ``x + 3`` of
    hard-sigmoid and hard-swish as MobileNetV3 writes them (``relu6(x + 3) / 6``)."""

    linear = True
    pointwise = True

    def __init__(self, value):
        self.value = finite_real(value, "value", "Shift")

    def get_config(self):
        return {"value": self.value}

    def output_shape(self, in_shape):
        return tuple(in_shape)

    def forward(self, x):
        return x + x.dtype.type(self.value), None

    def jvp(self, cache, dx):
        return dx

    vjp = jvp


class Permute(Layer):
    """A reordering of the axes, ``x.permute(*dims)`` (``torch.permute``): ``dims`` counts
    the batch axis as 0, which must stay first. ShuffleNet's channel shuffle and a vision
    transformer's patch embedding move data this way. Linear: tangents are permuted, and
    cotangents permuted back."""

    linear = True

    def __init__(self, dims):
        try:
            dims = tuple(int(d) for d in dims)
        except (TypeError, ValueError):
            raise TypeError(f"Permute: dims must be a sequence of ints (all axes, the batch "
                            f"axis 0 first), got {dims!r}") from None
        if sorted(dims) != list(range(len(dims))) or not dims or dims[0] != 0:
            raise ValueError(f"Permute: dims must be a permutation of 0..{len(dims) - 1} "
                             f"that keeps the batch axis 0 first, got {list(dims)}")
        self.dims = dims

    def get_config(self):
        return {"dims": list(self.dims)}

    def output_shape(self, in_shape):
        in_shape = tuple(in_shape)
        if len(in_shape) + 1 != len(self.dims):
            raise self._input_error(f"{len(self.dims)} axes (batch included)",
                                    ("N",) + in_shape,
                                    "give Permute one entry per axis of its input")
        return tuple(in_shape[d - 1] for d in self.dims[1:])

    def forward(self, x):
        self.output_shape(x.shape[1:])
        return np.ascontiguousarray(x.transpose(self.dims)), None

    def jvp(self, cache, dx):
        return np.ascontiguousarray(dx.transpose((0, 1) + tuple(d + 1 for d in self.dims[1:])))

    def vjp(self, cache, gy):
        back = np.argsort(self.dims)
        return np.ascontiguousarray(gy.transpose((0, 1) + tuple(d + 1 for d in back[1:])))


class Expand(Layer):
    """Broadcasting to a larger per-example shape, ``x.expand(N, *shape)`` and
    ``x.expand_as(y)`` (SENet's ``x * y.expand_as(x)``; ONNX ``Expand``). Linear: tangents
    are broadcast, and cotangents summed over the broadcast axes."""

    linear = True

    def __init__(self, shape):
        try:
            self.shape = tuple(int(s) for s in shape)
        except (TypeError, ValueError):
            raise TypeError(f"Expand: shape must be a sequence of ints (per example, without "
                            f"the batch axis), got {shape!r}") from None
        if any(s < 0 for s in self.shape):
            raise ValueError(f"Expand: shape must hold sizes >= 0, got {list(self.shape)}")

    def get_config(self):
        return {"shape": list(self.shape)}

    def output_shape(self, in_shape):
        in_shape = tuple(in_shape)
        try:
            out = tuple(int(d) for d in np.broadcast_shapes(in_shape, self.shape))
        except ValueError:
            out = None
        if out != self.shape:
            target = shape_str(("N",) + self.shape)
            raise self._input_error(f"a shape that broadcasts to {target}", ("N",) + in_shape,
                                    "expand along axes of size 1 only")
        return out

    def forward(self, x):
        self.output_shape(x.shape[1:])
        return np.ascontiguousarray(np.broadcast_to(
            _leading_ones(x, 1, len(self.shape)), x.shape[:1] + self.shape)), x.shape[1:]

    def jvp(self, cache, dx):
        return np.ascontiguousarray(np.broadcast_to(
            _leading_ones(dx, 2, len(self.shape)), dx.shape[:2] + self.shape))

    def vjp(self, cache, gy):
        full = (1,) * (len(self.shape) - len(cache)) + tuple(cache)
        axes = tuple(2 + i for i, (n, m) in enumerate(zip(full, self.shape)) if n == 1 != m)
        g = gy.sum(axis=axes, keepdims=True) if axes else gy
        return g.reshape(gy.shape[:2] + tuple(cache))


def _leading_ones(v, lead, nd):
    return v.reshape(v.shape[:lead] + (1,) * (nd - (v.ndim - lead)) + v.shape[lead:])


class Constant(Layer):
    """A constant array, the same for every example, whatever its input: the mean and
    standard deviation a model normalises its input by (``(x - self.mean) / self.std``), a
    positional embedding added to tokens. Its input only gives the batch size; the
    derivative is zero. Graph joints (:class:`Add`, :class:`Mul`, :class:`Concat`) combine
    it with values.

    Parameters
    ----------
    shape : sequence of int
        The per-example shape; ``value`` (a buffer, saved with the model) holds the array.
    """

    linear = True
    buffer_names = ("value",)

    def __init__(self, shape):
        try:
            self.shape = tuple(int(s) for s in shape)
        except (TypeError, ValueError):
            raise TypeError(f"Constant: shape must be a sequence of ints (per example), got "
                            f"{shape!r}") from None
        if any(s < 0 for s in self.shape):
            raise ValueError(f"Constant: shape must hold sizes >= 0, got {list(self.shape)}")
        self.value = np.zeros(self.shape, np.float32)

    def get_config(self):
        return {"shape": list(self.shape)}

    def output_shape(self, in_shape):
        return self.shape

    def forward(self, x):
        value = np.asarray(self.value, x.dtype).reshape(self.shape)
        return np.ascontiguousarray(np.broadcast_to(value, x.shape[:1] + self.shape)), \
            x.shape[1:]

    def jvp(self, cache, dx):
        return np.zeros(dx.shape[:2] + self.shape, dx.dtype)

    def vjp(self, cache, gy):
        return np.zeros(gy.shape[:2] + tuple(cache), gy.dtype)


class Reshape(Layer):
    """A new per-example shape for the same values in row-major order (``x.view(N,
    *shape)``); one entry may be -1."""

    linear = True

    def __init__(self, shape):
        try:
            shape = tuple(int(s) for s in shape)
        except (TypeError, ValueError):
            raise TypeError(f"Reshape: shape must be a sequence of ints (per example, without "
                            f"the batch axis), got {shape!r}") from None
        if shape.count(-1) > 1 or any(s < -1 for s in shape):
            raise ValueError(f"Reshape: shape may hold one -1 and otherwise sizes >= 0, got "
                             f"{shape!r}")
        self.shape = shape

    def get_config(self):
        return {"shape": list(self.shape)}

    def output_shape(self, in_shape):
        size = int(np.prod(in_shape, dtype=np.int64))
        known = int(np.prod([s for s in self.shape if s != -1], dtype=np.int64))
        shape = self.shape
        if -1 in shape:
            if known == 0 or size % known:
                raise self._input_error(f"(N, ...) with a multiple of {known} values per "
                                        f"example", ("N",) + tuple(in_shape),
                                        "check the shape given to Reshape")
            shape = tuple(size // known if s == -1 else s for s in shape)
        elif known != size:
            raise self._input_error(f"(N, ...) with {known} values per example",
                                    ("N",) + tuple(in_shape), "check the shape given to Reshape")
        return shape

    def forward(self, x):
        return x.reshape((x.shape[0],) + self.output_shape(x.shape[1:])), x.shape[1:]

    def jvp(self, cache, dx):
        return dx.reshape(dx.shape[:2] + self.output_shape(cache))

    def vjp(self, cache, gy):
        return gy.reshape(gy.shape[:2] + tuple(cache))


def _axes(axes, ndim, owner):
    out = []
    for a in axes:
        d = a + ndim + 1 if a < 0 else a
        if not 1 <= d <= ndim:
            raise ValueError(f"{owner}: axis {a} is not a per-example axis of an input with "
                             f"{ndim + 1} axes (batch included); use 1..{ndim}")
        out.append(d)
    return out


class Slice(Layer):
    """Strided slicing of per-example axes, as ONNX's Slice and Python's ``x[a:b:s]``.

    Parameters
    ----------
    starts, ends, axes : sequences of int
        For each axis in ``axes`` (the batch axis is 0, so ``x[:, :, ::2, ::2]`` is
        ``axes=[2, 3]``), keep ``start:end:step``. Out-of-range bounds are clipped as in
        Python; negative ones count from the end.
    steps : sequence of int, optional
        Positive steps (default 1).

    Examples
    --------
    >>> import numpy as np, fwdderiv as fd
    >>> fd.Slice([0, 0], [2**62, 2**62], [2, 3], [2, 2])(np.zeros((1, 3, 8, 8))).shape
    (1, 3, 4, 4)
    """

    linear = True

    def __init__(self, starts, ends, axes, steps=None):
        starts, ends, axes = list(starts), list(ends), list(axes)
        steps = [1] * len(axes) if steps is None else list(steps)
        if not (len(starts) == len(ends) == len(axes) == len(steps)) or not axes:
            raise ValueError(f"Slice: starts, ends, axes and steps must have one entry per "
                             f"sliced axis, got {starts}, {ends}, {axes}, {steps}")
        if any(int(s) < 1 for s in steps):
            raise ValueError(f"Slice: steps must be positive (reversing slices are not "
                             f"supported), got {steps}")
        if len(set(axes)) != len(axes) or 0 in axes:
            raise ValueError(f"Slice: axes must be distinct per-example axes (not 0, the "
                             f"batch axis), got {axes}")
        self.starts, self.ends = [int(s) for s in starts], [int(e) for e in ends]
        self.axes, self.steps = [int(a) for a in axes], [int(s) for s in steps]

    def get_config(self):
        return {"starts": self.starts, "ends": self.ends, "axes": self.axes,
                "steps": self.steps}

    def _index(self, in_shape):
        """Per-example index tuple of slices."""
        index = [slice(None)] * len(in_shape)
        for d, a, b, s in zip(_axes(self.axes, len(in_shape), repr(self)), self.starts,
                              self.ends, self.steps):
            index[d - 1] = slice(*slice(a, b, s).indices(in_shape[d - 1]))
        return tuple(index)

    def output_shape(self, in_shape):
        in_shape = tuple(in_shape)
        return tuple(len(range(*sl.indices(n))) for sl, n in zip(self._index(in_shape), in_shape))

    def forward(self, x):
        index = self._index(x.shape[1:])
        return np.ascontiguousarray(x[(slice(None),) + index]), x.shape[1:]

    def jvp(self, cache, dx):
        return np.ascontiguousarray(dx[(slice(None),) * 2 + self._index(cache)])

    def vjp(self, cache, gy):
        gx = np.zeros(gy.shape[:2] + tuple(cache), gy.dtype)
        gx[(slice(None),) * 2 + self._index(cache)] = gy
        return gx

    # Windowed tangents (N, H, W, C0, Rh, Rw, C) of images: slicing rows or columns with
    # start a and step s leaves each entry's window as it is, at stride s*S and offset
    # P - a*S; slicing channels slices the last axis.
    def window_rule(self, window):
        if any(a not in (1, 2, 3) for a in self.axes) or min(self.starts) < 0:
            return None
        step, start = {2: (1, 0), 3: (1, 0)}, {}
        for a, b, s_ in zip(self.axes, self.starts, self.steps):
            step[a], start[a] = (s_, b), b
        (sh, ah), (sw, aw) = step[2], step[3]
        return local.Window(window.size, (window.stride[0] * sh, window.stride[1] * sw),
                            (window.offset[0] - ah * window.stride[0],
                             window.offset[1] - aw * window.stride[1]))

    def window_jvp(self, cache, T, window, nxt, n):
        c, h, w = self._index(cache)
        return np.ascontiguousarray(T[:, h, w, :, :, :, c])



class Pad(Layer):
    """Constant padding of any per-example axes, in ``torch.nn.functional.pad``'s order:
    ``pad = (last_before, last_after, second_last_before, ...)``. Padding channels,
    ``Pad((0, 0, 0, 0, p, p))`` on ``(N, C, H, W)``, is the "option A" shortcut of He et
    al. (2016). The JVP pads with zeros (the constant has no derivative)."""

    linear = True

    def __init__(self, pad, value=0.0):
        try:
            pad = tuple(int(p) for p in pad)
        except (TypeError, ValueError):
            raise TypeError(f"Pad: pad must be a sequence of ints, got {pad!r}") from None
        if len(pad) % 2 or not pad or min(pad) < 0:
            raise ValueError(f"Pad: pad must be an even number of non-negative ints (before, "
                             f"after per axis, last axis first), got {pad!r}; negative "
                             f"padding (cropping) is not supported: use Slice")
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise TypeError(f"Pad: value must be a real number, got {value!r}")
        self.pad, self.value = pad, float(value)

    def get_config(self):
        return {"pad": list(self.pad), "value": self.value}

    def _widths(self, ndim):
        k = len(self.pad) // 2
        if k > ndim:
            raise ValueError(f"{self!r} pads {k} axes, but the input has only {ndim} "
                             f"per-example axes")
        widths = [(0, 0)] * (ndim - k)
        for i in range(k - 1, -1, -1):
            widths.append((self.pad[2 * i], self.pad[2 * i + 1]))
        return widths

    def output_shape(self, in_shape):
        return tuple(n + a + b for n, (a, b) in zip(in_shape, self._widths(len(in_shape))))

    def _apply(self, x, lead, value):
        widths = [(0, 0)] * lead + self._widths(x.ndim - lead)
        return np.pad(x, widths, constant_values=value)

    def forward(self, x):
        return self._apply(x, 1, x.dtype.type(self.value)), x.shape[1:]

    def jvp(self, cache, dx):
        return self._apply(dx, 2, 0)

    def vjp(self, cache, gy):
        widths = self._widths(len(cache))
        index = tuple(slice(a, a + n) for n, (a, _) in zip(cache, widths))
        return np.ascontiguousarray(gy[(slice(None),) * 2 + index])

    # Windowed tangents (N, H, W, C0, Rh, Rw, C) of images: padded rows and columns get
    # zero windows and shift the offset; padded channels are zero entries of the last axis.
    def window_rule(self, window):
        if len(self.pad) > 6:
            return None
        (_, _), (top, _), (left, _) = self._widths(3)
        return local.shift(window, top, left)

    def window_jvp(self, cache, T, window, nxt, n):
        (c0, c1), (t, b), (l, r) = self._widths(len(cache))
        widths = [(0, 0), (t, b), (l, r), (0, 0), (0, 0), (0, 0), (c0, c1)]
        return np.pad(T, widths)


# -- registry entries ------------------------------------------------------------------------
def _scale_from_torch(factor):
    def rule(ctx, a):
        if factor is None:
            c = exchange.torch_scalar(ctx, a["other"])
            tensor = ctx.constant(a["other"]) if c is None else None
            if tensor is not None and np.all(tensor != 0):      # x / std, per channel
                x = a["self"]
                inverse = exchange.per_example(ctx, 1.0 / tensor, ctx.shape(x))
                return ctx.emit(ctx.layer("Mul"), [x, exchange.emit_constant(ctx, x, inverse)])
            if c is None and tensor is None:                    # x / y = x * y^-1
                inverse = ctx.emit(ctx.layer("Pow", exponent=-1.0), a["other"])
                return ctx.emit(ctx.layer("Mul"), [a["self"], inverse])
            if c is None or c == 0:
                ctx.fail("a division by a value other than a nonzero constant",
                         "divide by constants only")
            return ctx.emit(ctx.layer("Scale", factor=1.0 / c), a["self"])
        return ctx.emit(ctx.layer("Scale", factor=factor), a["self"])
    return rule


def _neg_from_onnx(imp, node, a):
    exchange.onnx_output(imp, node, imp.emit(imp.layer("Scale", factor=-1.0), node.input[0]))


def _reshape_from_torch(ctx, a):
    x = exchange.torch_input(a)
    src, out = ctx.shape(x), ctx.out_shape()
    if tuple(src) == tuple(out):
        return ctx.value(x)
    if len(out) == 1:
        return ctx.emit(ctx.layer("Flatten"), x)
    return ctx.emit(ctx.layer("Reshape", shape=list(out)), x)


def _reshape_from_onnx(imp, node, a):
    x, target = node.input[0], node.input[1]
    shape = imp.shapes[target] if target in imp.shapes else list(imp.const(target))
    src, per = imp.shape(x), []
    for i, s in enumerate(shape[1:], start=1):
        if s == 0 and not a.get("allowzero", 0):
            s = src[i - 1] if i - 1 < len(src) else imp.fail("a 0 past the input's rank")
        per.append(int(s) if s is not exchange.BATCH else
                   imp.fail("the batch size inside a shape"))
    first = shape[0]
    shown = ["N" if s is exchange.BATCH else int(s) for s in shape]
    if first not in (exchange.BATCH, 0, -1):
        imp.fail(f"a fixed batch size {first} in the target shape {shown}", "shape",
                 "export with a dynamic batch axis (dynamic_axes / dynamic_shapes), or read "
                 "the file one example at a time (from_onnx(..., per_example=True))")
    if first == -1 and -1 in per:
        imp.fail(f"two -1 in the target shape {shape}")
    size, rest = int(np.prod(src)), int(np.prod(per))
    if first == -1 and rest and size != rest and size % rest == 0:
        imp.fail(f"a target shape {shown} whose -1 folds {size // rest} rows of each example "
                 f"(per-example shape {tuple(src)}) into the batch axis, as Swin's window "
                 "partition does,", "shape", "read the file one example at a time "
                 "(from_onnx(..., per_example=True)), or import the model from PyTorch with "
                 "fwdderiv.from_torch")
    exchange.onnx_reshape_to(imp, node, x, per)


def _slice_from_torch(ctx, a):
    x = a["self"]
    dim = int(a["dim"]) % (len(ctx.shape(x)) + 1)
    start = 0 if a["start"] is None else int(a["start"])
    end = exchange.BIG if a["end"] is None else min(int(a["end"]), exchange.BIG)
    step = int(a["step"])
    if ctx.out_shape() == ctx.shape(x) and dim != 0:
        return ctx.value(x)
    if dim == 0:
        if start == 0 and end >= exchange.BIG and step == 1:
            return ctx.value(x)
        ctx.fail("slicing the batch axis", "slice per-example axes only")
    return ctx.emit(ctx.layer("Slice", starts=[start], ends=[end], axes=[dim], steps=[step]), x)


def _select_from_torch(ctx, a):
    x = a["self"]
    dim = exchange.torch_dim(ctx, x, a["dim"], "indexing")
    i = int(a["index"]) % ctx.shape(x)[dim - 1]
    y = ctx.emit(ctx.layer("Slice", starts=[i], ends=[i + 1], axes=[dim]), x)
    out = ctx.out_shape()
    return ctx.emit(ctx.layer("Flatten") if len(out) == 1 else
                    ctx.layer("Reshape", shape=list(out)), y)


def _slice_from_onnx(imp, node, a):
    x = node.input[0]
    starts, ends, axes, steps = (
        [int(v) for v in imp.const(node.input[i])] if len(node.input) > i and node.input[i]
        else None for i in (1, 2, 3, 4))
    nd = len(imp.shape(x)) + 1
    axes = [v % nd for v in (axes or range(len(starts)))]
    steps = steps or [1] * len(axes)
    keep = [(s, min(e, exchange.BIG), ax, st) for s, e, ax, st in zip(starts, ends, axes, steps)]
    if any(st < 1 for *_, st in keep):
        imp.fail("negative steps", "steps")
    for s, e, ax, st in keep:
        if ax == 0 and not (s == 0 and e >= exchange.BIG // 2 and st == 1):
            imp.fail("slicing the batch axis", "axes")
    keep = [k for k in keep if k[2] != 0]
    if not keep:
        return exchange.onnx_output(imp, node, imp.value(x))
    s, e, ax, st = zip(*keep)
    exchange.onnx_output(imp, node, imp.emit(imp.layer("Slice", starts=s, ends=e, axes=ax,
                                                       steps=st), x))


#: torch's and ONNX's non-constant padding modes -> the fwdderiv layer.
_PAD_MODES = {"reflect": "ReflectionPad2d", "replicate": "ReplicationPad2d",
              "edge": "ReplicationPad2d", "circular": "CircularPad2d", "wrap": "CircularPad2d"}


def _pad_from_torch(ctx, a):
    x = exchange.torch_input(a)
    pad = [int(p) for p in a["pad"]]
    mode = a.get("mode", "constant")
    value = 0.0 if a.get("value") is None else float(a["value"])
    if min(pad) < 0:
        if mode != "constant" or len(pad) != 4:
            ctx.fail(f"negative padding (cropping) with mode {mode!r} of {len(pad) // 2} axes",
                     "crop with a slice")
        if value == 0:
            return ctx.emit(ctx.layer("ZeroPad2d", padding=pad), x)
        return ctx.emit(ctx.layer("ConstantPad2d", padding=pad, value=value), x)
    if mode != "constant":
        if mode not in _PAD_MODES or len(pad) != 4:
            ctx.fail(f"padding mode {mode!r} with {len(pad) // 2} axes",
                     "use constant, reflect, replicate or circular padding of the last two "
                     "axes")
        return ctx.emit(ctx.layer(_PAD_MODES[mode], padding=pad), x)
    return ctx.emit(ctx.layer("Pad", pad=pad, value=value), x)


def _onnx_pad_widths(imp, node):
    """ONNX ``pads`` (and ``axes``) in torch's order: last axis first, (before, after)."""
    pads = [int(p) for p in imp.const(node.input[1])]
    nd = len(imp.shape(node.input[0])) + 1
    axes = list(range(nd))
    if len(node.input) > 3 and node.input[3]:
        axes = [int(v) % nd for v in imp.const(node.input[3])]
    widths = {ax: (b, e) for ax, b, e in zip(axes, pads[:len(axes)], pads[len(axes):])}
    if widths.get(0, (0, 0)) != (0, 0):
        imp.fail("padding the batch axis", "pads")
    order = [w for ax in range(nd - 1, 0, -1) for w in widths.get(ax, (0, 0))]
    if min(order) < 0:
        imp.fail("negative pads (cropping)", "pads", "use Slice")
    return order


def _pad_from_onnx(imp, node, a):
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    order = _onnx_pad_widths(imp, node)
    if mode == "constant":
        value = 0.0
        if len(node.input) > 2 and node.input[2]:
            value = float(imp.const(node.input[2]).reshape(()))
        layer = imp.layer("Pad", pad=order, value=value)
    elif mode in _PAD_MODES and not any(order[4:]):
        layer = imp.layer(_PAD_MODES[mode], "mode", padding=order[:4])
    else:
        imp.fail(f"mode={mode!r}", "mode")
    exchange.onnx_output(imp, node, imp.emit(layer, node.input[0]))


# -- export: torch.nn has no module for these, so each is a function of the inputs -------
def _scale_to_torch(layer):
    return exchange.torch_function_module(lambda x: x * layer.factor, "Scale")


def _reshape_to_torch(layer):
    return exchange.torch_function_module(
        lambda x: x.reshape((x.shape[0],) + tuple(layer.shape)), "Reshape")


def _slice_to_torch(layer):
    def fn(x):
        index = [slice(None)] * x.ndim
        for a, b, d, s in zip(layer.starts, layer.ends, layer.axes, layer.steps):
            index[d % x.ndim] = slice(a, b, s)
        return x[tuple(index)]
    return exchange.torch_function_module(fn, "Slice")


def _pad_to_torch(layer):
    from torch.nn import functional
    return exchange.torch_function_module(
        lambda x: functional.pad(x, tuple(layer.pad), value=layer.value), "Pad")


def _reshape_relations(c):
    if c["shape"].count(-1) > 1:
        raise schema.SchemaError(f"field 'shape' may hold one -1, got {c['shape']}")


def _slice_relations(c):
    steps = c["steps"] if c["steps"] is not None else [1] * len(c["axes"])
    if not len(c["starts"]) == len(c["ends"]) == len(c["axes"]) == len(steps):
        raise schema.SchemaError(
            "fields 'starts', 'ends', 'axes' and 'steps' must have one entry per sliced axis, "
            f"got lengths {len(c['starts'])}, {len(c['ends'])}, {len(c['axes'])}, "
            f"{len(steps)}")


register_layer(Scale, schema=schema.LayerSchema({"factor": (schema.ANY_REAL, schema.REQUIRED)}),
               torch={"div": _scale_from_torch(None), "div_": _scale_from_torch(None),
                      "neg": _scale_from_torch(-1.0)},
               # ONNX Mul and Div by a number are the Mul layer's rules, which make a Scale
               onnx={"Neg": _neg_from_onnx},
               to_torch=_scale_to_torch, example=Example({"factor": -1.5}, (2, 3)))
register_layer(Reshape, schema=schema.LayerSchema(
                   {"shape": (schema.int_list(minimum=-1, maximum=2**40), schema.REQUIRED)},
                   relations=_reshape_relations),
               torch={op: _reshape_from_torch for op in (
                   "view", "reshape", "_unsafe_view", "flatten", "unflatten", "squeeze",
                   "unsqueeze")},
               onnx={"Reshape": _reshape_from_onnx},
               to_torch=_reshape_to_torch, example=Example({"shape": [4, -1]}, (2, 3, 2)))
register_layer(Slice, schema=schema.LayerSchema(
                   {"starts": (schema.int_list(min_len=1), schema.REQUIRED),
                    "ends": (schema.int_list(min_len=1), schema.REQUIRED),
                    "axes": (schema.int_list(min_len=1, minimum=-schema.MAX_AXES,
                                             maximum=schema.MAX_AXES, nonzero=True,
                                             distinct=True), schema.REQUIRED),
                    "steps": (schema.optional(schema.int_list(minimum=1, min_len=1)), None)},
                   relations=_slice_relations),
               torch={"slice": _slice_from_torch, "select": _select_from_torch},
               onnx={"Slice": _slice_from_onnx}, to_torch=_slice_to_torch,
               example=Example({"starts": [1, 0], "ends": [3, 2**62], "axes": [1, 3],
                                "steps": [1, 2]}, (4, 2, 5)))
register_layer(Pad, schema=schema.LayerSchema(
                   {"pad": (schema.int_list(minimum=0, maximum=schema.MAX_EXTENT, min_len=2,
                                            even=True), schema.REQUIRED),
                    "value": (schema.ANY_REAL, 0.0)}),
               torch={"pad": _pad_from_torch, "constant_pad_nd": _pad_from_torch},
               onnx={"Pad": _pad_from_onnx}, to_torch=_pad_to_torch,
               example=Example({"pad": [1, 0, 0, 2], "value": 0.25}, (2, 3, 3)))


@exchange.moves_batch
def _permute_from_torch(ctx, a):
    x = a["self"]
    nd = len(ctx.shape(x)) + 1
    dims = [int(d) % nd for d in a["dims"]]
    if dims[0] != 0:
        return _items_from_torch(ctx, x, dims)
    return ctx.emit(ctx.layer("Permute", dims=dims), x)


@exchange.moves_batch
def _transpose_from_torch(ctx, a):
    x = a["self"]
    nd = len(ctx.shape(x)) + 1
    i, j = int(a["dim0"]) % nd, int(a["dim1"]) % nd
    dims = list(range(nd))
    dims[i], dims[j] = dims[j], dims[i]
    if dims[0] != 0:
        return _items_from_torch(ctx, x, dims)
    return ctx.emit(ctx.layer("Permute", dims=dims), x)


def _items_from_torch(ctx, x, dims):
    """A permutation that moves the batch axis second (timm's attention: ``qkv.permute(2,
    0, 3, 1, 4)``, then ``qkv[0]`` or ``qkv.unbind(0)``), read only by items along its
    first axis: each item is a slice of ``x``, permuted; the readers get them ahead."""
    axis, rest = exchange.items_permuted(dims, ctx.fail)
    shape, nd = ctx.shape(x), len(dims)
    reads = {}
    for user in ctx.node.users:
        op = getattr(getattr(user.target, "overloadpacket", None), "__name__", "")
        if op == "select" and int(user.args[1]) % nd == 0:
            reads[user] = int(user.args[2])
        elif op == "unbind" and int(user.args[1] if len(user.args) > 1 else 0) % nd == 0:
            reads.update({g: int(g.args[1]) for g in user.users})
            reads[user] = None
        else:
            ctx.fail(f"a permutation {dims} that moves the batch axis, read by {user.target}",
                     "read it only by items along its first axis (x[i], x.unbind(0))",
                     batch_moved=True)
    for user, i in reads.items():
        if i is not None:
            ctx.values[user.name] = exchange.emit_item(ctx, x, shape, axis,
                                                       i % shape[axis - 1], rest)
        ctx.ahead.add(user.name)
    for user, i in reads.items():       # unbind: the list of its items
        if i is None:
            ctx.values[user.name] = [ctx.values[g.name] for g in user.users]
    return None


def _transpose_from_onnx(imp, node, a):
    x = node.input[0]
    shape = (None,) + imp.shape(x)
    perm = [int(p) for p in a.get("perm", range(len(shape))[::-1])]
    if perm[0] != 0:
        return _items_from_onnx(imp, node, perm)
    moved = [p for p in perm if shape[p] != 1]
    if moved == sorted(moved):              # the memory layout stays: a reshape
        return exchange.onnx_reshape_to(imp, node, x, [shape[p] for p in perm[1:]])
    exchange.onnx_output(imp, node, imp.emit(imp.layer("Permute", "perm", dims=perm), x))


def _items_from_onnx(imp, node, perm):
    """A Transpose that moves the batch axis second, read only by items along axis 0 (see
    :func:`_items_from_torch`): Gather of one index (``x[i]``), or a Split into ones, each
    part then squeezed (``x.unbind(0)``). Each item is a slice of the input, permuted; the
    readers' outputs get them ahead."""
    def fail(what, fix):
        imp.fail(what, "perm", fix)
    axis, rest = exchange.items_permuted(perm, fail)
    x, out = node.input[0], node.output[0]
    shape = imp.shape(x)
    reads = {}                              # reader's output -> item index
    for n in (n for n in imp.graph.node if out in n.input):
        reads.update(_onnx_item_reads(imp, n, out, shape[axis - 1]) or {})
    if out in {o.name for o in imp.graph.output} or None in reads.values() or not reads:
        fail(f"perm={perm} moves the batch axis", "read the result only by items along "
             "axis 0 (x[i], x.unbind(0)); a model that works sequence first "
             "(nn.MultiheadAttention) imports one example at a time "
             "(from_onnx(..., per_example=True))")
    for name, i in reads.items():
        imp.values[name] = exchange.emit_item(imp, x, shape, axis, i, rest)
    imp.ahead.update(reads)


def _onnx_item_reads(imp, n, out, size):
    """The values a reader ``n`` of the moved Transpose output ``out`` takes as items along
    axis 0 (output name -> index), a None index where it reads otherwise; for a Split,
    its parts are read through Squeeze nodes, whose outputs are the items."""
    a = imp.attrs(n)
    if n.op_type == "Gather" and n.input[0] == out and a.get("axis", 0) == 0:
        i = imp.consts.get(n.input[1])
        return {n.output[0]: int(i) % size if i is not None and np.ndim(i) == 0 else None}
    if n.op_type != "Split" or n.input[0] != out or a.get("axis", 0) != 0 or \
            len(n.output) != size:
        return {n.output[0]: None}
    reads = {}
    imp.ahead.update(n.output)              # the parts themselves are never values
    for i, part in enumerate(n.output):
        for s in (s for s in imp.graph.node if part in s.input):
            axes = imp.attrs(s).get("axes")
            if len(s.input) > 1 and s.input[1]:
                axes = _constant_ahead(imp, s.input[1])
            ok = s.op_type == "Squeeze" and axes is not None and \
                [int(v) for v in np.reshape(axes, -1)] == [0]
            reads[s.output[0]] = i if ok else None
    return reads


def _constant_ahead(imp, name):
    """The constant ``name``, also when the Constant node giving it comes later in the
    graph than the node asking; None if it is not a constant."""
    if name in imp.consts:
        return imp.consts[name]
    node = next((n for n in imp.graph.node if name in n.output), None)
    if node is None or node.op_type != "Constant" or "value" not in imp.attrs(node):
        return None
    return imp.onnx.numpy_helper.to_array(imp.attrs(node)["value"])


def _permute_to_torch(layer):
    return exchange.torch_function_module(lambda x: x.permute(*layer.dims), "Permute")


def _dims(v, field):
    dims = schema.int_list(minimum=0, maximum=schema.MAX_AXES, min_len=2, distinct=True)(v, field)
    if sorted(dims) != list(range(len(dims))) or dims[0] != 0:
        raise schema.SchemaError(f"field {field!r} must be a permutation of 0..{len(dims) - 1} "
                                 f"with 0 first, got {dims}")
    return dims


register_layer(Shift, schema=schema.LayerSchema({"value": (schema.ANY_REAL, schema.REQUIRED)}),
               to_torch=lambda layer: exchange.torch_function_module(
                   lambda x: x + layer.value, "Shift"),
               example=Example({"value": 3.0}, (2, 3)),
               absent={kind: "adding or subtracting a number (aten.add/sub/rsub, ONNX Add/Sub) "
                             "is the Add layer's rule, which makes a Shift"
                       for kind in ("torch", "onnx")})
register_layer(Permute, schema=schema.LayerSchema({"dims": (_dims, schema.REQUIRED)}),
               torch={"permute": _permute_from_torch, "transpose": _transpose_from_torch},
               onnx={"Transpose": _transpose_from_onnx}, to_torch=_permute_to_torch,
               example=Example({"dims": [0, 3, 1, 2]}, (2, 3, 4)))


def _expand_from_torch(ctx, a):
    x = a["self"]
    out = ctx.out_shape()
    c = ctx.constant(x)
    if c is not None:       # a parameter broadcast over the batch: a class token
        value = np.broadcast_to(exchange.per_example(ctx, c, out), out)
        like = a["other"] if "other" in a else "input"      # expand_as: its batch
        return exchange.emit_constant(ctx, like, value.copy())
    if tuple(out) == tuple(ctx.shape(x)):
        return ctx.value(x)
    return ctx.emit(ctx.layer("Expand", shape=list(out)), x)


def _expand_from_onnx(imp, node, a):
    x, target = node.input[0], node.input[1]
    shape = imp.shapes[target] if target in imp.shapes else \
        [int(v) for v in np.asarray(imp.const(target)).reshape(-1)]
    if x in imp.consts:
        return _expand_constant_from_onnx(imp, node, imp.consts[x], shape)
    src = imp.shape(x)
    per = list(shape[1:]) if len(shape) == len(src) + 1 else list(shape)
    if exchange.BATCH in per or len(per) < len(src):
        imp.fail(f"expanding {src} to {shape}", "shape", "expand per-example axes only")
    out = [int(d) for d in np.broadcast_shapes(tuple(src), tuple(per))]
    if out == list(src):
        return exchange.onnx_output(imp, node, imp.value(x))
    exchange.onnx_output(imp, node, imp.emit(imp.layer("Expand", "shape", shape=out), x))


def _expand_constant_from_onnx(imp, node, c, shape):
    """A constant expanded to the batch size (a class token, ``cls.expand(n, -1, -1)``):
    a Constant layer fed by the network's input, which gives it the batch size."""
    ones = [1 if d is exchange.BATCH else int(d) for d in shape]
    if not shape or shape[0] is not exchange.BATCH or exchange.BATCH in shape[1:] or \
            len(shape) < np.ndim(c):
        imp.fail(f"expanding a constant of shape {np.shape(c)} to {shape}", "shape",
                 "expand constants along the batch axis (the first) only")
    try:
        full = np.broadcast_shapes(np.shape(c), tuple(ones))
    except ValueError:
        full = (0,)
    if full[0] != 1:
        imp.fail(f"expanding a constant of shape {np.shape(c)} to {shape}", "shape",
                 "give the constant one entry along the batch axis")
    value = np.broadcast_to(c, full)[0].copy()
    source = next(k for k, v in imp.values.items() if v == "input")
    exchange.onnx_output(imp, node, exchange.emit_constant(imp, source, value))


def _expand_to_torch(layer):
    return exchange.torch_function_module(
        lambda x: x.expand((x.shape[0],) + tuple(layer.shape)), "Expand")


register_layer(Expand, schema=schema.LayerSchema(
                   {"shape": (schema.int_list(minimum=0, maximum=2**40), schema.REQUIRED)}),
               torch={"expand": _expand_from_torch, "expand_as": _expand_from_torch},
               onnx={"Expand": _expand_from_onnx}, to_torch=_expand_to_torch,
               # the ONNX rule is tested on SENet's expand_as (tests/interop/test_blocks.py)
               example=Example({"shape": [3, 4, 5]}, (3, 1, 5), routes=("torch",)))


def _constant_to_torch(layer):
    import torch
    value = torch.from_numpy(np.array(layer.value, copy=True))
    return exchange.torch_function_module(
        lambda x: value.to(x.dtype).expand((x.shape[0],) + tuple(layer.shape)), "Constant")


def _filled_from_torch(fill):
    """``torch.zeros((x.size(0), ...))`` and its kin (``ones``, ``full``, ``new_zeros``,
    ``zeros_like``, ...): a tensor of the batch size filled with one number, a Constant
    layer (fed by the operand it is made like, or by the input). ``fill``: the number, or
    None to read ``fill_value``."""
    def rule(ctx, a):
        value = float(a["fill_value"] if fill is None else fill)
        like = a.get("self")
        if like is None or ctx.constant(like) is not None:
            like = "input"
        return exchange.emit_constant(ctx, like, np.full(ctx.out_shape(), value))
    return rule


def _constant_of_shape_from_onnx(imp, node, a):
    """ConstantOfShape of a shape computed from the batch size (a shape known at import
    time is folded to a constant before any rule runs): a Constant layer."""
    shape = imp.shapes.get(node.input[0])
    if not shape or shape[0] is not exchange.BATCH or exchange.BATCH in shape[1:]:
        imp.fail(f"a filled tensor of shape {shape}", fix="give it the batch size first")
    fill = 0.0
    if "value" in a:
        from onnx import numpy_helper
        fill = float(numpy_helper.to_array(a["value"]).reshape(-1)[0])
    source = next(k for k, v in imp.values.items() if v == "input")
    value = np.full([int(d) for d in shape[1:]], fill)
    exchange.onnx_output(imp, node, exchange.emit_constant(imp, source, value))


_FILLED = {"zeros": 0.0, "ones": 1.0, "full": None}
register_layer(Constant, schema=schema.LayerSchema(
                   {"shape": (schema.int_list(minimum=0, maximum=2**40), schema.REQUIRED)},
                   lambda c: {"value": tuple(c["shape"])}),
               # also a constant operand of Add, Sub, Mul, Div or Concat (the joints' rules)
               torch={f"{pre}{name}{post}": _filled_from_torch(fill)
                      for name, fill in _FILLED.items()
                      for pre, post in (("", ""), ("new_", ""), ("", "_like"))},
               onnx={"ConstantOfShape": _constant_of_shape_from_onnx},
               to_torch=_constant_to_torch,
               example=Example({"shape": [2, 3]}, (4,), routes=()))

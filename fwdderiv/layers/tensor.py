"""Layers that rearrange or rescale values: constant scaling, reshapes, strided slices and
constant padding of any axis (the pieces of ``forward`` methods that call tensor ops:
``0.5 * x``, ``x.view(...)``, ``x[:, :, ::2, ::2]``, ``F.pad``)."""
import numbers

import numpy as np

from ..core import local
from ..core.layer import Layer
from ..validation import shape_str


class Scale(Layer):
    r"""Multiplication by a constant, :math:`y = c\,x`, :math:`dy = c\,dx`."""

    linear = True
    pointwise = True

    def __init__(self, factor):
        if not isinstance(factor, numbers.Real) or isinstance(factor, bool) or \
                not np.isfinite(factor):
            raise TypeError(f"Scale: factor must be a finite real number, got {factor!r}")
        self.factor = float(factor)

    def get_config(self):
        return {"factor": self.factor}

    def output_shape(self, in_shape):
        return tuple(in_shape)

    def forward(self, x):
        return x * x.dtype.type(self.factor), None

    def jvp(self, cache, dx):
        return dx * dx.dtype.type(self.factor)

    vjp = jvp


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

    def window_jvp(self, cache, T, window, nxt, n, slope=None):
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

    def window_jvp(self, cache, T, window, nxt, n, slope=None):
        (c0, c1), (t, b), (l, r) = self._widths(len(cache))
        widths = [(0, 0), (t, b), (l, r), (0, 0), (0, 0), (0, 0), (c0, c1)]
        return np.pad(T, widths)

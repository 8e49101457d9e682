r"""Input normalisation by a fixed mean and standard deviation, as an input layer does it:
:math:`y = (x - \mu) / \sigma`, with :math:`\mu` and :math:`\sigma` arrays that broadcast
over one example (a mean image of shape (1, 28, 28), per-channel values of shape
(3, 1, 1), or numbers). torchvision's ``transforms.Normalize(mean, std)`` does this per
channel; an image input layer with a ``Mean`` subtracts the mean training image.
"""
import numpy as np

from .. import schema
from ..core.layer import Layer
from ..registry import Example, register_layer
from . import exchange


def _array(value, name):
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"Normalize: {name} must be a number or an array of numbers, got "
                        f"{type(value).__name__}") from None
    if not np.all(np.isfinite(a)):
        raise ValueError(f"Normalize: {name} must be finite, got non-finite entries; "
                         "compute it from images without NaN or inf")
    return a


class Normalize(Layer):
    r"""``y = (x - mean) / std`` with constant ``mean`` and ``std`` (buffers, saved with
    the model, not trained); :math:`dy = dx / \sigma`.

    Parameters
    ----------
    mean : float or array_like, default 0
        Broadcasts over one example: a number, per-channel ``(C, 1, 1)`` or a whole image
        ``(C, H, W)`` (the mean training image: ``x_train.mean(axis=0)``).
    std : float or array_like, default 1
        Broadcasts like ``mean``; every entry must be positive.
    shape : sequence of int, optional
        The common shape of ``mean`` and ``std`` (what saved models record; given alone,
        ``mean`` is zeros and ``std`` ones of that shape until the buffers are loaded).

    Examples
    --------
    >>> import numpy as np, fwdderiv as fd
    >>> x = np.random.default_rng(0).random((5, 1, 8, 8))
    >>> layer = fd.layers.Normalize(mean=x.mean(axis=0))
    >>> np.allclose(layer(x), x - x.mean(axis=0))
    True
    """

    linear = True
    buffer_names = ("mean", "std")

    def __init__(self, mean=0.0, std=1.0, shape=None):
        mean, std = _array(mean, "mean"), _array(std, "std")
        try:
            common = np.broadcast_shapes(mean.shape, std.shape,
                                         () if shape is None else tuple(shape))
        except ValueError:
            raise ValueError(f"Normalize: mean of shape {mean.shape}, std of shape "
                             f"{std.shape} and shape={shape} do not broadcast together; give "
                             "arrays of one example's shape or per-channel (C, 1, 1)") from None
        if np.any(std <= 0):
            raise ValueError(f"Normalize: std must be positive everywhere, got a minimum of "
                             f"{std.min():g}; add a small epsilon to zero deviations")
        self.shape = tuple(int(s) for s in common)
        self.mean = np.array(np.broadcast_to(mean, self.shape))      # own, writable copies
        self.std = np.array(np.broadcast_to(std, self.shape))

    def get_config(self):
        return {"shape": list(self.shape)}

    def output_shape(self, in_shape):
        in_shape = tuple(in_shape)
        try:
            out = np.broadcast_shapes(in_shape, self.shape)
        except ValueError:
            out = None
        if out != in_shape:
            raise ValueError(f"Normalize: mean/std of shape {self.shape} do not fit inputs of "
                             f"shape {in_shape} per example; give them that shape, or "
                             "(C, 1, 1) per channel")
        return in_shape

    def forward(self, x):
        mean, std = self.mean.astype(x.dtype), self.std.astype(x.dtype)
        return (x - mean) / std, None

    def jvp(self, cache, dx):
        return dx / self.std.astype(dx.dtype)

    vjp = jvp


def _normalize_to_torch(layer):
    import torch

    mean, std = torch.from_numpy(layer.mean.copy()), torch.from_numpy(layer.std.copy())
    return exchange.torch_function_module(
        lambda x: (x - mean.to(x.dtype)) / std.to(x.dtype), "Normalize")


register_layer(Normalize, schema=schema.LayerSchema(
                   {"shape": (schema.int_list(minimum=1, maximum=2**40, min_len=0),
                              schema.REQUIRED)},
                   lambda c: {"mean": tuple(c["shape"]), "std": tuple(c["shape"])}),
               to_torch=_normalize_to_torch,
               example=Example({"shape": [1, 3, 3]}, (1, 3, 3)),
               absent={kind: "imported as what it is made of: subtracting a constant tensor "
                             "(Add with a Constant) and dividing by one (Mul)"
                       for kind in ("torch", "onnx")})

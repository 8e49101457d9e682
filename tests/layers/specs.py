"""One table of layer specs drives the JVP, VJP and shape checks of every layer.

A row: a name, a factory ``(rng) -> layer``, an input-shape strategy, and an input maker
that keeps the point off kinks (|x| > 1e-3 before ReLU, distinct values in a max-pool
window). Adding a layer costs one row.
"""
import numpy as np

import fwdderiv as fd


def smooth(rng, shape):
    return rng.normal(size=shape)


def off_zero(rng, shape):
    x = rng.normal(size=shape)
    return np.where(np.abs(x) < 1e-2, 1e-2 * np.sign(x) + (x == 0) * 1e-2, x)


def off(*points, scale=1.0):
    """An input maker: normal values times ``scale``, none within 1e-2 of ``points``."""
    def make(rng, shape):
        x = rng.normal(size=shape) * scale
        for p in points:
            x = np.where(np.abs(x - p) < 1e-2, p + 1e-2, x)
        return x
    return make


def distinct(rng, shape):
    # a random permutation of well separated values: no ties anywhere
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) / n - 0.5) * 4


def batchnorm(rng, c):
    layer = fd.BatchNorm2d(c, eps=1e-3)
    layer.weight = rng.normal(size=c).astype(np.float32)
    layer.bias = rng.normal(size=c).astype(np.float32)
    layer.running_mean = rng.normal(size=c).astype(np.float32)
    layer.running_var = rng.uniform(0.5, 2, size=c).astype(np.float32)
    return layer


def conv(rng, c, h, w):
    k = int(rng.integers(1, min(h, w, 3) + 1))
    groups = int(rng.choice([g for g in (1, 2) if c % g == 0]))
    return fd.Conv2d(c, 2 * groups, k, stride=int(rng.integers(1, 3)),
                     padding=int(rng.integers(0, 2)), dilation=1 if k == 1 else int(rng.integers(1, 2)),
                     groups=groups, seed=int(rng.integers(1000)))


def dilated_conv(rng, c, h, w):
    return fd.Conv2d(c, 3, 2, dilation=2, padding=1, seed=int(rng.integers(1000)))


# (name, factory(rng, *shape) -> layer, kind of input: "image" (C, H, W) or "vector" (F,),
#  input maker)
SPECS = [
    ("Linear", lambda rng, f: fd.Linear(f, 3, seed=int(rng.integers(1000))), "vector", smooth),
    ("Linear-nobias", lambda rng, f: fd.Linear(f, 2, bias=False), "vector", smooth),
    ("Conv2d", conv, "image", smooth),
    ("Conv2d-dilated", dilated_conv, "image", smooth),
    ("ConvTranspose2d", lambda rng, c, h, w: fd.ConvTranspose2d(
        c, 2, 3, stride=2, padding=1, output_padding=1, seed=int(rng.integers(1000))),
     "image", smooth),
    ("ReLU", lambda rng, *s: fd.ReLU(), "image", off_zero),
    ("Sigmoid", lambda rng, *s: fd.Sigmoid(), "image", smooth),
    ("Tanh", lambda rng, *s: fd.Tanh(), "vector", smooth),
    ("MaxPool2d", lambda rng, *s: fd.MaxPool2d(2), "image", distinct),
    ("MaxPool2d-overlap", lambda rng, *s: fd.MaxPool2d(3, stride=1, padding=1), "image", distinct),
    ("AvgPool2d", lambda rng, *s: fd.AvgPool2d(2, stride=1, padding=1), "image", smooth),
    ("Softmax", lambda rng, *s: fd.Softmax(), "vector", smooth),
    ("LogSoftmax", lambda rng, *s: fd.LogSoftmax(), "vector", smooth),
    ("Flatten", lambda rng, *s: fd.Flatten(), "image", smooth),
    ("Pad2d", lambda rng, *s: fd.Pad2d((1, 0, 2, 1)), "image", smooth),
    ("Dropout", lambda rng, *s: fd.Dropout(0.3), "vector", smooth),
    ("BatchNorm2d", lambda rng, c, h, w: batchnorm(rng, c), "image", smooth),
    # PyTorch's activations and options (issue 9); tests/layers/test_torch_parity.py
    # compares each with PyTorch
    ("LeakyReLU", lambda rng, *s: fd.LeakyReLU(0.2), "image", off_zero),
    ("ELU", lambda rng, *s: fd.ELU(0.7), "image", off_zero),
    ("GELU", lambda rng, *s: fd.GELU(), "image", smooth),
    ("GELU-tanh", lambda rng, *s: fd.GELU(approximate="tanh"), "vector", smooth),
    ("SiLU", lambda rng, *s: fd.SiLU(), "image", smooth),
    ("Mish", lambda rng, *s: fd.Mish(), "vector", smooth),
    ("Softplus", lambda rng, *s: fd.Softplus(beta=2.0, threshold=1.0), "image", off(0.5)),
    ("Hardtanh", lambda rng, *s: fd.Hardtanh(-0.5, 1.0), "image", off(-0.5, 1.0)),
    ("ReLU6", lambda rng, *s: fd.ReLU6(), "image", off(0.0, 6.0, scale=4.0)),
    ("Hardswish", lambda rng, *s: fd.Hardswish(), "image", off(-3.0, 3.0, scale=3.0)),
    ("Identity", lambda rng, *s: fd.Identity(), "image", smooth),
    ("Dropout2d", lambda rng, *s: fd.Dropout2d(0.5), "image", smooth),
    ("Softmax-dim1", lambda rng, *s: fd.Softmax(dim=1), "image", smooth),
    ("LogSoftmax-dim-2", lambda rng, *s: fd.LogSoftmax(dim=-2), "image", smooth),
    ("Flatten-2-3", lambda rng, *s: fd.Flatten(2, 3), "image", smooth),
    ("ZeroPad2d-crop", lambda rng, *s: fd.ZeroPad2d((2, -1, 0, 1)), "image", smooth),
    ("ConstantPad2d", lambda rng, *s: fd.ConstantPad2d((1, 0, 2, 1), 0.5), "image", smooth),
    ("ReflectionPad2d", lambda rng, *s: fd.ReflectionPad2d((2, 1, 0, 2)), "image", smooth),
    ("ReplicationPad2d", lambda rng, *s: fd.ReplicationPad2d(2), "image", smooth),
    ("CircularPad2d", lambda rng, *s: fd.CircularPad2d((1, 2, 2, 0)), "image", smooth),
    ("Conv2d-same-reflect", lambda rng, c, h, w: fd.Conv2d(c, 3, 2, padding="same",
                                                           padding_mode="reflect"), "image", smooth),
    ("Conv2d-circular", lambda rng, c, h, w: fd.Conv2d(c, 2, 3, padding=1, stride=2,
                                                       padding_mode="circular"), "image", smooth),
    ("MaxPool2d-ceil-dilated", lambda rng, *s: fd.MaxPool2d(2, stride=2, dilation=(1, 2),
                                                            ceil_mode=True), "image", distinct),
    ("AvgPool2d-options", lambda rng, *s: fd.AvgPool2d(3, 2, 1, ceil_mode=True,
                                                       count_include_pad=False), "image", smooth),
    ("AvgPool2d-divisor", lambda rng, *s: fd.AvgPool2d(2, 1, divisor_override=3), "image", smooth),
    ("AdaptiveAvgPool2d", lambda rng, *s: fd.AdaptiveAvgPool2d((2, None)), "image", smooth),
    ("AdaptiveMaxPool2d", lambda rng, *s: fd.AdaptiveMaxPool2d(2), "image", distinct),
    ("BatchNorm1d", lambda rng, f: fd.BatchNorm1d(f, eps=1e-3), "vector", smooth),
    ("LayerNorm", lambda rng, c, h, w: fd.LayerNorm((h, w)), "image", smooth),
    ("GroupNorm", lambda rng, c, h, w: fd.GroupNorm(2, c), "image", smooth),
]

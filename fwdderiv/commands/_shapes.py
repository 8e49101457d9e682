"""The input a model expects, and one line saying what to change when inputs do not fit.

The per-example shape comes from what the model file states (an ONNX graph's input, the
``example_input`` a PyTorch file declares) or from what its first layer tells (a
convolution's channel count; for a fwdderiv network, the image sides its layers accept,
found from their output shapes without running anything). Every check here runs before
any framework sees the inputs.
"""
from dataclasses import dataclass

import numpy as np

from ._common import CommandError

#: Image sides tried when a fwdderiv network's input size is found from its layers.
SIDES = range(1, 321)

#: Names of unknown axes in the shapes printed, by rank.
AXIS_NAMES = {1: ("F",), 2: ("C", "L"), 3: ("C", "H", "W"), 4: ("C", "D", "H", "W")}


class InputError(CommandError):
    """Inputs a model cannot take (wrong shape, dtype, NaN, no examples): one line, exit
    status 2."""


@dataclass(frozen=True)
class Expected:
    """The per-example input shape a model takes, as far as it is known.

    Attributes
    ----------
    shape : tuple of int or None
        Without the batch axis; None where any size fits or the size is unknown.
    source : str
        How it is known, for messages: "the ONNX graph's input", "its example_input",
        "its first layer Conv2d(1, 6, 5)".
    """
    shape: tuple
    source: str

    def text(self):
        """``(N, 1, 32, 32)``, unknown axes by name: ``(N, 1, H, W)``."""
        names = AXIS_NAMES.get(len(self.shape), tuple(f"d{i}" for i in range(len(self.shape))))
        return "(" + ", ".join(["N"] + [n if s is None else str(s)
                                        for s, n in zip(self.shape, names)]) + ")"

    def fits(self, per_example):
        """Whether a per-example shape agrees with every known axis."""
        return len(per_example) == len(self.shape) and all(
            w is None or w == g for w, g in zip(self.shape, per_example))


def shape_text(shape):
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def fix_for(expected, got, resize=None):
    """What to do to inputs of shape ``got`` (with the batch axis) so that they fit.

    ``resize`` replaces the advice for images of the right rank and channels but the
    wrong size (``--image-size H,W`` for a data set's images): a template whose
    ``{size}`` becomes the sides the model takes, as ``32,32`` (``H,W`` if unknown)."""
    want, per = expected.shape, tuple(got[1:])
    if len(per) == len(want) - 1 and want[0] in (1, None) and expected.fits((1,) + per):
        return "add a channel axis with x[:, None]"
    if expected.fits(tuple(got)):
        return "add a batch axis with x[None]"
    if len(per) == len(want) - 1 and Expected(want[1:], "").fits(per):
        return (f"the model takes {want[0]} channels: repeat a gray channel with "
                f"numpy.repeat(x[:, None], {want[0]}, axis=1)")
    if len(per) == len(want) >= 2 and Expected(want[1:] + want[:1], "").fits(per):
        return "move the channel axis first with numpy.moveaxis(x, -1, 1)"
    if len(per) == len(want) >= 2 and want[0] in (None, per[0]):
        sides = want[1:]
        if resize:
            return resize.format(size="H,W" if None in sides else ",".join(map(str, sides)))
        if None in sides:
            return "resize the inputs to a size the model takes"
        return f"resize the inputs to {'x'.join(map(str, sides))}"
    if len(per) == len(want) >= 2:
        gray = " (gray: x.mean(axis=1, keepdims=True))" if want[0] == 1 else ""
        return f"give inputs with {want[0]} channel(s), not {per[0]}{gray}"
    return f"reshape the inputs to {expected.text()}"


def refuse(expected, got, model, option, resize=None, detail=""):
    """The InputError for inputs of shape ``got`` that do not fit ``expected``."""
    why = f": {detail}" if detail else ""
    return InputError(f"{option}: {model} expects inputs of shape {expected.text()} "
                      f"({expected.source}), got {shape_text(got)}{why}; "
                      f"{fix_for(expected, got, resize)}")


def check_array(x, option):
    """Refuse what no model takes: a dtype other than float32/float64, fewer than 2 axes,
    no examples, NaN or infinite values."""
    shape = shape_text(x.shape)
    if x.dtype not in (np.float32, np.float64):
        scale = " / 255 if they are 0-255 pixels" if x.dtype.kind in "ui" else ""
        raise InputError(f"{option}: expected float32 or float64 values, got {x.dtype} "
                         f"{shape}; convert with x.astype(numpy.float32){scale} before saving")
    if x.ndim < 2 or x.shape[0] < 1:
        fix = ("save at least one example" if x.ndim >= 2 else
               "add the batch axis with x[None]")
        raise InputError(f"{option}: expected shape (N, *S) with N >= 1 examples, got "
                         f"{shape}; {fix}")
    bad = int(np.size(x) - np.isfinite(x).sum())
    if bad:
        raise InputError(f"{option}: expected finite values, got {bad} NaN or infinite "
                         f"entries in {shape}; replace them, e.g. numpy.nan_to_num(x)")


def _fits(net, shape):
    try:
        net.output_shape(shape)
    except (ValueError, TypeError):
        return False
    return True


def _first_layer(net):
    """The first layer with a channel or feature count, and whether a layer that may
    reshape (anything but an elementwise layer) comes before it."""
    for k, (_, layer, _) in enumerate(net.nodes):
        if hasattr(layer, "in_channels") or hasattr(layer, "in_features"):
            return layer, any(not getattr(other, "elementwise", False)
                              for _, other, _ in net.nodes[:k])
    return None, False


def expected_from_net(net, got=None):
    """What a fwdderiv network takes, from its first layer with a channel or feature count
    and the image sides its layers accept (the smallest square that fits); None when its
    layers tell nothing."""
    layer, reshaped = _first_layer(net)
    if layer is None:
        return None
    source = f"its first layer {layer!r}"
    if hasattr(layer, "in_channels"):
        templates = [lambda s, c=layer.in_channels: (c, s, s)]
    else:
        f = layer.in_features
        if not reshaped:
            return Expected((f,), source)
        square = [c for c in (1, 3) if f % c == 0 and round((f // c) ** 0.5) ** 2 == f // c]
        flat = Expected((f,), source + " after a reshape")
        if got is not None and len(got) == 2 or not square:
            return flat
        templates = [lambda s, c=c: (c, s, s) for c in square]
    for template in templates:
        sides = [s for s in SIDES if _fits(net, template(s))]
        if sides and sides[-1] == SIDES[-1]:
            return Expected(template(sides[0])[:1] + (None, None),
                            f"{source}; sides of {sides[0]} or more")
        if sides:
            more = f"; sides {sides[0]} to {sides[-1]} fit" if len(sides) > 1 else ""
            return Expected(template(sides[0]), f"{source}{more}")
    return Expected((layer.in_channels, None, None) if hasattr(layer, "in_channels")
                    else (layer.in_features,), source)


def expected_from_module(module):
    """What a PyTorch module takes, from its first leaf module with parameters: a
    convolution's channels and rank (``(C, H, W)`` for Conv2d), or a Linear layer's
    features (the last axis); None for anything else."""
    import torch
    for leaf in module.modules():
        if next(leaf.children(), None) is not None:
            continue
        if isinstance(leaf, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
            return Expected((leaf.in_channels,) + (None,) * len(leaf.kernel_size),
                            f"its first layer {leaf}")
        if isinstance(leaf, torch.nn.Linear):
            return Expected((leaf.in_features,), f"its first layer {leaf}")
        if isinstance(leaf, torch.nn.Flatten) or next(leaf.parameters(), None) is not None:
            return None
    return None


def declared_example(source, factory, module, spec):
    """The ``example_input`` a PyTorch model file declares: at module level, on the
    factory, or on the module it returned (first found), as a NumPy batch; or None."""
    for owner, where in ((source, "module-level"), (factory, "factory's"),
                         (module, "module's")):
        value = getattr(owner, "example_input", None)
        if value is None:
            continue
        if isinstance(value, (tuple, list)) and len(value) == 1:
            value = value[0]
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        if not isinstance(value, np.ndarray) or value.ndim < 2:
            raise CommandError(
                f"{spec}: the {where} example_input must be a batch, an array or tensor of "
                f"shape (N, *S) such as torch.zeros(1, 1, 32, 32); got "
                f"{type(value).__name__} {shape_text(np.shape(value))}")
        return value
    return None

"""fwdderiv: the forward derivative (input Jacobian) of neural networks, layer by layer.

After Papernot et al., "The Limitations of Deep Learning in Adversarial Settings"
(IEEE EuroS&P 2016), equations (4)-(6).
"""
from . import config, datasets, numeric
from .process import tune_process
from .core import Elementwise, Graph, Layer, Sequential, Trace
from .io import load, save
from .registry import register_layer
from .interop import from_onnx, from_torch, to_torch
from .interop import to_jax
from .layers import (AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Linear, LogSoftmax,
                     MaxPool2d, Pad2d, ReLU, Sigmoid, Softmax, Tanh)
from .layers import (Add, Concat, Constant, Expand, Mean, Mul, Pad, Permute, Reshape, Scale,
                     Shift, Slice)
from .layers import (ELU, GELU, Dropout2d, Hardswish, Hardtanh, Identity, LeakyReLU, Mish,
                     Pow, ReLU6, SiLU, Softplus)
from .layers import (CircularPad2d, ConstantPad2d, ReflectionPad2d, ReplicationPad2d,
                     ZeroPad2d)
from .layers import AdaptiveAvgPool2d, AdaptiveMaxPool2d, BatchNorm1d, GroupNorm, LayerNorm
from .layers import Upsample
from .layers import ConvTranspose2d
from .layers import Erf, MatMul
from .layers import Gather, GatherElements, PixelShuffle, PixelUnshuffle, Roll, Unfold
from .layers import PReLU
from .layers import Conv1d, Einsum, Tile
from .layers import Abs, Amax, Clamp, Exp, Log, Std, Sum, Var, Where
from .layers import Normalize
from . import fusions  # noqa: E402,F401  (registers the planner's fusion rules)
from . import attacks, models, training  # noqa: E402  (they import the layers above)
from .gradients import loss_gradient  # noqa: E402
from . import attribution  # noqa: E402
from . import regularization  # noqa: E402

__version__ = "0.1.0"

__all__ = ["attacks", "training", "Add", "Concat", "Mul", "Pad", "Reshape", "Scale", "Slice",
           "AvgPool2d", "BatchNorm2d", "Conv2d", "Dropout", "Elementwise",
           "Flatten", "Graph", "Layer", "Linear",
           "LogSoftmax", "MaxPool2d", "Pad2d", "ReLU", "Sequential", "Sigmoid", "Softmax",
           "Tanh", "Trace", "config", "datasets", "load", "models", "numeric", "save", "tune_process",
           "loss_gradient", "attribution", "from_onnx", "from_torch", "to_torch", "regularization"]
__all__ += ["ELU", "GELU", "Dropout2d", "Hardswish", "Hardtanh", "Identity", "LeakyReLU",
            "Mish", "ReLU6", "SiLU", "Softplus", "CircularPad2d", "ConstantPad2d",
            "ReflectionPad2d", "ReplicationPad2d", "ZeroPad2d", "AdaptiveAvgPool2d",
            "AdaptiveMaxPool2d", "BatchNorm1d", "GroupNorm", "LayerNorm"]
__all__ += ["to_jax", "register_layer", "Constant", "Expand", "Mean", "Permute", "Pow", "Shift",
            "Upsample"]
__all__ += ["ConvTranspose2d"]
__all__ += ["PReLU"]
__all__ += ["Conv1d", "Einsum", "Tile"]
__all__ += ["Abs", "Amax", "Clamp", "Exp", "Log", "Std", "Sum", "Var", "Where", "Normalize"]
__all__ += ["Gather", "GatherElements", "PixelShuffle", "PixelUnshuffle", "Roll", "Unfold"]
__all__ += ["Erf", "MatMul"]

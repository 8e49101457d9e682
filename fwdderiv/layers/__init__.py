"""The layers: the paper's (Linear, Conv2d, ReLU, MaxPool2d, Softmax) and the others a
real model needs. Each implements the protocol of :class:`fwdderiv.core.Layer`."""
from .adaptive import AdaptiveAvgPool2d, AdaptiveMaxPool2d
from .activation import (ELU, GELU, Hardswish, Hardtanh, LeakyReLU, Mish, ReLU, ReLU6, Sigmoid,
                         SiLU, Softplus, Tanh)
from .conv import Conv2d
from .linear import Linear
from .merge import Add, Concat, Mul
from .padding import (CircularPad2d, ConstantPad2d, ReflectionPad2d, ReplicationPad2d,
                      ZeroPad2d)
from .normalization import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm
from .pool import AvgPool2d, MaxPool2d
from .shape import Dropout, Dropout2d, Flatten, Identity, Pad2d
from .softmax import LogSoftmax, Softmax
from .tensor import Pad, Reshape, Scale, Slice

#: Every layer class by name, for loading saved architectures.
LAYER_TYPES = {cls.__name__: cls for cls in (
    Linear, Conv2d, ReLU, Sigmoid, Tanh, MaxPool2d, AvgPool2d, Softmax, LogSoftmax,
    Flatten, Pad2d, Dropout, BatchNorm2d,
    # the joints and tensor ops of graphs
    Add, Concat, Mul, Pad, Reshape, Scale, Slice,
    # PyTorch's layers and options (issue 9)
    ELU, GELU, Hardswish, Hardtanh, LeakyReLU, Mish, ReLU6, SiLU, Softplus, Identity,
    Dropout2d, ZeroPad2d, ConstantPad2d, ReflectionPad2d, ReplicationPad2d, CircularPad2d,
    AdaptiveAvgPool2d, AdaptiveMaxPool2d, BatchNorm1d, LayerNorm, GroupNorm)}

__all__ = sorted(LAYER_TYPES) + ["LAYER_TYPES"]

"""The layers: the paper's (Linear, Conv2d, ReLU, MaxPool2d, Softmax) and the others a
real model needs. Each implements the protocol of :class:`fwdderiv.core.Layer`."""
from .adaptive import AdaptiveAvgPool2d, AdaptiveMaxPool2d
from .activation import Erf
from .activation import (ELU, GELU, Hardswish, Hardtanh, LeakyReLU, Mish, Pow, ReLU, ReLU6,
                         Sigmoid, SiLU, Softplus, Tanh)
from .conv import Conv2d
from .conv1d import Conv1d
from .einsum import Einsum
from .tile import Tile
from .conv_transpose import ConvTranspose2d
from .linear import Linear
from .matmul import MatMul
from .merge import Add, Concat, Mul
from .padding import (CircularPad2d, ConstantPad2d, ReflectionPad2d, ReplicationPad2d,
                      ZeroPad2d)
from .normalization import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm
from .normalize import Normalize
from .pool import AvgPool2d, MaxPool2d
from .gather import Gather, GatherElements
from .rearrange import PixelShuffle, PixelUnshuffle, Roll, Unfold
from .prelu import PReLU
from .shape import Dropout, Dropout2d, Flatten, Identity, Pad2d
from .softmax import LogSoftmax, Softmax
from .tensor import Constant, Expand, Pad, Permute, Reshape, Scale, Shift, Slice
from .upsample import Upsample
from .unary import Abs, Clamp, Exp, Log, Where
from .reduce import Amax, Mean, Std, Sum, Var

from .. import registry

#: Every layer class of fwdderiv by name, for loading saved architectures (each module
#: registers its classes with :func:`fwdderiv.registry.register_layer`).
LAYER_TYPES = registry.layer_types()

__all__ = sorted(LAYER_TYPES) + ["LAYER_TYPES"]

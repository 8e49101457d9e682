"""The layers: the paper's (Linear, Conv2d, ReLU, MaxPool2d, Softmax) and the others a
real model needs. Each implements the protocol of :class:`fwdderiv.core.Layer`."""
from .activation import ReLU, Sigmoid, Tanh
from .conv import Conv2d
from .linear import Linear
from .merge import Add, Concat, Mul
from .normalization import BatchNorm2d
from .pool import AvgPool2d, MaxPool2d
from .shape import Dropout, Flatten, Pad2d
from .softmax import LogSoftmax, Softmax
from .tensor import Pad, Reshape, Scale, Slice

#: Every layer class by name, for loading saved architectures.
LAYER_TYPES = {cls.__name__: cls for cls in (
    Linear, Conv2d, ReLU, Sigmoid, Tanh, MaxPool2d, AvgPool2d, Softmax, LogSoftmax,
    Flatten, Pad2d, Dropout, BatchNorm2d,
    # the joints and tensor ops of graphs
    Add, Concat, Mul, Pad, Reshape, Scale, Slice)}

__all__ = sorted(LAYER_TYPES) + ["LAYER_TYPES"]

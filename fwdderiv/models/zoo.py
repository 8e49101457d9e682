"""Architectures used in the paper and in the adversarial-examples literature.

Every model ends with :class:`~fwdderiv.Softmax`, the paper's output F; ``net[:-1]`` is the
same network with logits Z as output. Layer ``i`` is initialised from ``seed + i``.
"""
import numpy as np

from ..core import Graph, Sequential
from ..layers import (Add, AvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, Pad,
                      Pad2d, ReLU, Slice, Softmax)


def _seeded(layers, seed):
    for i, layer in enumerate(layers):
        if hasattr(layer, "weight"):
            fresh = type(layer)(**layer.get_config(), seed=seed + i)
            layer.weight, layer.bias = fresh.weight, fresh.bias
    return Sequential(layers)


def lenet5(seed=0, in_size=32):
    """LeNet-5 of the seed question, on 1x32x32 input.

    conv 1->6 5x5, ReLU, max-pool 2; conv 6->16 5x5, ReLU, max-pool 2; conv 16->120 5x5,
    ReLU; flatten; linear 120->84, ReLU; linear 84->10; softmax.

    Parameters
    ----------
    seed : int
    in_size : {32, 28}
        28 prepends ``Pad2d(2)`` so 28x28 MNIST digits go in as they are (the Jacobian is
        then taken with respect to the 28x28 pixels).
    """
    if in_size not in (28, 32):
        raise ValueError(f"lenet5: in_size must be 32 or 28 (zero-padded to 32), got {in_size!r}")
    pad = [Pad2d(2)] if in_size == 28 else []
    return _seeded(pad + [
        Conv2d(1, 6, 5), ReLU(), MaxPool2d(2),
        Conv2d(6, 16, 5), ReLU(), MaxPool2d(2),
        Conv2d(16, 120, 5), ReLU(), Flatten(),
        Linear(120, 84), ReLU(), Linear(84, 10), Softmax()], seed)


def lenet_mnist(seed=0):
    """Caffe's LeNet for 1x28x28 MNIST, as used by adversarial-example papers:
    conv 20@5x5, max-pool 2, conv 50@5x5, max-pool 2, FC 500, ReLU, FC 10, softmax."""
    return _seeded([
        Conv2d(1, 20, 5), MaxPool2d(2), Conv2d(20, 50, 5), MaxPool2d(2), Flatten(),
        Linear(800, 500), ReLU(), Linear(500, 10), Softmax()], seed)


def mnist_convnet(seed=0):
    """The deeper MNIST convnet (conv 32-32-pool-64-64-pool, FC 200-200-10), 1x28x28."""
    return _seeded([
        Conv2d(1, 32, 3), ReLU(), Conv2d(32, 32, 3), ReLU(), MaxPool2d(2),
        Conv2d(32, 64, 3), ReLU(), Conv2d(64, 64, 3), ReLU(), MaxPool2d(2), Flatten(),
        Linear(1024, 200), ReLU(), Linear(200, 200), ReLU(), Linear(200, 10), Softmax()], seed)


def mlp(in_shape=(1, 28, 28), hidden=(256, 256), n_classes=10, seed=0):
    """Multilayer perceptron: flatten, then Linear+ReLU per hidden width, Linear, softmax."""
    n = 1
    for s in in_shape:
        n *= int(s)
    layers, width = [Flatten()], n
    for h in hidden:
        layers += [Linear(width, h), ReLU()]
        width = h
    return _seeded(layers + [Linear(width, n_classes), Softmax()], seed)


def digits_net(seed=0):
    """A small convnet for scikit-learn's 8x8 digits, 1x8x8:
    conv 16@3x3 pad 1, ReLU, max-pool 2; conv 32@3x3 pad 1, ReLU, max-pool 2; FC 64, ReLU,
    FC 10, softmax."""
    return _seeded([
        Conv2d(1, 16, 3, padding=1), ReLU(), MaxPool2d(2),
        Conv2d(16, 32, 3, padding=1), ReLU(), MaxPool2d(2), Flatten(),
        Linear(128, 64), ReLU(), Linear(64, 10), Softmax()], seed)


def photo_cnn(in_shape=(3, 64, 64), n_classes=5, seed=0):
    """A small CNN for colour photos, after the "deep network" of the Keras and TensorFlow
    image-classification tutorial on the flower photos, for 64x64 inputs:
    conv 16@3x3 pad 1, ReLU, max-pool 2; conv 32@3x3 pad 1, ReLU, max-pool 2; conv 64@3x3
    pad 1, ReLU, max-pool 2; flatten; FC 128, ReLU; FC ``n_classes``; softmax.

    Parameters
    ----------
    in_shape : (int, int, int)
        (C, H, W) of the images, H and W at least 8 (each pooling halves them, rounding
        down); 64x64 RGB by default.
    n_classes : int
        Outputs (5 for the flower photos; the class count of the image folder).
    seed : int
    """
    try:
        c, h, w = (int(s) for s in in_shape)
    except (TypeError, ValueError):
        c = h = w = 0
    if min(c, h // 8, w // 8) < 1 or not (isinstance(n_classes, int) and n_classes >= 2):
        raise ValueError(f"photo_cnn: expected in_shape (C, H, W) with H, W >= 8 and "
                         f"n_classes >= 2, got in_shape={in_shape!r}, n_classes={n_classes!r}; "
                         "e.g. photo_cnn((3, 64, 64), n_classes=5)")
    return _seeded([
        Conv2d(c, 16, 3, padding=1), ReLU(), MaxPool2d(2),
        Conv2d(16, 32, 3, padding=1), ReLU(), MaxPool2d(2),
        Conv2d(32, 64, 3, padding=1), ReLU(), MaxPool2d(2), Flatten(),
        Linear(64 * (h // 8) * (w // 8), 128), ReLU(), Linear(128, n_classes), Softmax()],
        seed)


def _batchnorm(c, rng):
    """A BatchNorm2d with statistics and affine parameters drawn near their usual trained
    ranges (the defaults, mean 0 and variance 1, would make it an identity)."""
    bn = BatchNorm2d(c)
    bn.weight = rng.uniform(0.5, 1.5, c).astype(np.float32)
    bn.bias = rng.uniform(-0.2, 0.2, c).astype(np.float32)
    bn.running_mean = rng.uniform(-0.2, 0.2, c).astype(np.float32)
    bn.running_var = rng.uniform(0.5, 1.5, c).astype(np.float32)
    return bn


class _Nodes:
    """Builds the node list of a residual :class:`~fwdderiv.Graph`: convolutions (bias-free,
    PyTorch's initialisation from ``seed`` plus a running count), BatchNorms drawn by
    :func:`_batchnorm`, and any other layer, each named and wired to a value."""

    def __init__(self, seed):
        self.nodes, self.seed = [], seed
        self.rng = np.random.default_rng(seed)
        self.count = iter(range(1, 10**6))

    def add(self, name, layer, src):
        self.nodes.append((name, layer, src))
        return name

    def conv(self, name, cin, cout, k, stride, src):
        return self.add(name, Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False,
                                     seed=self.seed + next(self.count)), src)

    def bn(self, name, c, src):
        return self.add(name, _batchnorm(c, self.rng), src)

    def conv_bn(self, name, cin, cout, k, stride, src):
        """conv, then BatchNorm (named ``name + ".bn"``): the value of the BatchNorm."""
        return self.bn(name + ".bn", cout, self.conv(name, cin, cout, k, stride, src))

    def head(self, src, pool, width, n_classes, softmax=True):
        """Global average pooling (``pool`` x ``pool``), flatten, linear, softmax."""
        self.add("pool", AvgPool2d(pool), src)
        self.add("flatten", Flatten(), "pool")
        self.add("fc", Linear(width, n_classes, seed=self.seed), "flatten")
        if softmax:
            self.add("softmax", Softmax(), "fc")
        return Graph(self.nodes)


def _basic_blocks(b, h, cin, widths, blocks, first_stride, shortcut):
    """He et al.'s post-activation basic blocks (conv 3x3, BN, ReLU, conv 3x3, BN, plus the
    shortcut, ReLU), ``blocks`` per stage; the first block of every stage after the first
    has stride 2. Returns the last value and its channels."""
    for stage, cout in enumerate(widths, start=1):
        for block in range(blocks):
            name = f"layer{stage}.{block}"
            stride = (first_stride if stage > 1 else 1) if block == 0 else 1
            a = b.add(name + ".relu1", ReLU(),
                      b.conv_bn(name + ".conv1", cin, cout, 3, stride, h))
            out = b.conv_bn(name + ".conv2", cout, cout, 3, 1, a)
            short = h
            if stride != 1 or cin != cout:
                if shortcut == "A":
                    sub = b.add(name + ".sub", Slice([0, 0], [2**62, 2**62], [2, 3], [2, 2]), h)
                    p = (cout - cin) // 2
                    short = b.add(name + ".pad", Pad((0, 0, 0, 0, p, cout - cin - p)), sub)
                else:
                    short = b.conv_bn(name + ".shortcut", cin, cout, 1, stride, h)
            b.add(name + ".add", Add(), [out, short])
            h, cin = b.add(name + ".relu2", ReLU(), name + ".add"), cout
    return h, cin


def resnet20(shortcut="A", n_classes=10, seed=0):
    """ResNet-20 for 3x32x32 CIFAR-10 images (He et al. 2016, Section 4.2), as a
    :class:`~fwdderiv.Graph`.

    conv 3->16 3x3, BN, ReLU; three stages of three basic blocks (conv 3x3, BN, ReLU, conv
    3x3, BN, plus the shortcut, ReLU) with 16, 32 and 64 channels, the first block of the
    second and third stages with stride 2; global average pooling; linear 64->10; softmax.

    Parameters
    ----------
    shortcut : {"A", "B"}
        Where a block changes shape, the shortcut of option A subsamples (``x[:, :, ::2,
        ::2]``) and zero-pads the new channels (no parameters); option B projects with a
        1x1 convolution of stride 2 and a BatchNorm.
    n_classes : int
    seed : int
        Convolution and linear weights use PyTorch's default initialisation from
        ``seed``; BatchNorm statistics are drawn from ``seed`` too, so the network is not
        trivially an identity there.
    """
    if shortcut not in ("A", "B"):
        raise ValueError(f"resnet20: shortcut must be 'A' or 'B', got {shortcut!r}")
    b = _Nodes(seed)
    h = b.add("relu1", ReLU(), b.conv_bn("conv1", 3, 16, 3, 1, "input"))
    h, c = _basic_blocks(b, h, 16, (16, 32, 64), 3, 2, shortcut)
    return b.head(h, 8, c, n_classes)


def resnet18(width=64, n_classes=10, seed=0, in_size=32):
    """ResNet-18 for 3x32x32 images, as the CIFAR-10 collections write He et al.'s
    (2016) ImageNet network: a 3x3 stem (conv 3->``width``, BN, ReLU, no max-pool), four
    stages of two basic blocks with ``width`` x 1, 2, 4, 8 channels (stride 2 at the
    first block of stages 2-4, projection shortcuts: 1x1 conv of stride 2 and BN), global
    average pooling, linear, softmax.

    Parameters
    ----------
    width : int
        Channels of the stem and the first stage (64 in the paper; smaller for tests).
    n_classes, seed : int
        As :func:`resnet20`.
    in_size : int
        Height and width of the input (a multiple of 8); the pool covers the last
        ``in_size // 8`` square.
    """
    if in_size % 8 or in_size <= 0:
        raise ValueError(f"resnet18: in_size must be a positive multiple of 8, got {in_size!r}")
    b = _Nodes(seed)
    h = b.add("relu1", ReLU(), b.conv_bn("conv1", 3, width, 3, 1, "input"))
    h, c = _basic_blocks(b, h, width, tuple(width * 2**k for k in range(4)), 2, 2, "B")
    return b.head(h, in_size // 8, c, n_classes)


def wide_resnet(depth=16, widen_factor=2, n_classes=10, seed=0, in_size=32):
    """Wide-ResNet-``depth``-``widen_factor`` (Zagoruyko and Komodakis, BMVC 2016) for
    3x32x32 images: conv 3->16 3x3; three groups of ``(depth - 4) / 6`` pre-activation
    blocks (BN, ReLU, conv 3x3, BN, ReLU, conv 3x3, plus the shortcut) with 16k, 32k, 64k
    channels (k = ``widen_factor``), stride 2 at the first block of groups 2 and 3; where
    the width or stride changes, the shortcut is a 1x1 convolution of the pre-activated
    input, as the public definitions write it; then BN, ReLU, global average pooling,
    linear, softmax.

    Parameters
    ----------
    depth : int
        6n + 4 (16 gives two blocks per group).
    widen_factor : int
    n_classes, seed, in_size : int
        As :func:`resnet18` (``in_size`` a multiple of 4).
    """
    if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(f"wide_resnet: depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, "
                         f"...), got {depth!r}")
    if in_size % 4 or in_size <= 0:
        raise ValueError(f"wide_resnet: in_size must be a positive multiple of 4, got "
                         f"{in_size!r}")
    b = _Nodes(seed)
    h, cin = b.conv("conv1", 3, 16, 3, 1, "input"), 16
    for group, cout in enumerate((16 * widen_factor, 32 * widen_factor, 64 * widen_factor)):
        for block in range((depth - 4) // 6):
            name = f"group{group + 1}.{block}"
            stride = 2 if group > 0 and block == 0 else 1
            act = b.add(name + ".relu1", ReLU(), b.bn(name + ".bn1", cin, h))
            out = b.add(name + ".relu2", ReLU(),
                        b.conv_bn(name + ".conv1", cin, cout, 3, stride, act))
            out = b.conv(name + ".conv2", cout, cout, 3, 1, out)
            short = h
            if stride != 1 or cin != cout:
                short = b.conv(name + ".shortcut", cin, cout, 1, stride, act)
            h, cin = b.add(name + ".add", Add(), [out, short]), cout
    h = b.add("relu", ReLU(), b.bn("bn", cin, h))
    return b.head(h, in_size // 4, cin, n_classes)


#: Model constructors by name (the CLI's ``--model`` choices).
ZOO = {f.__name__: f for f in (lenet5, lenet_mnist, mnist_convnet, mlp, digits_net, resnet20,
                                resnet18, wide_resnet, photo_cnn)}

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


def _batchnorm(c, rng):
    """A BatchNorm2d with statistics and affine parameters drawn near their usual trained
    ranges (the defaults, mean 0 and variance 1, would make it an identity)."""
    bn = BatchNorm2d(c)
    bn.weight = rng.uniform(0.5, 1.5, c).astype(np.float32)
    bn.bias = rng.uniform(-0.2, 0.2, c).astype(np.float32)
    bn.running_mean = rng.uniform(-0.2, 0.2, c).astype(np.float32)
    bn.running_var = rng.uniform(0.5, 1.5, c).astype(np.float32)
    return bn


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
    rng = np.random.default_rng(seed)
    nodes, counter = [], iter(range(1, 10**6))

    def conv(cin, cout, k, stride, src, name):
        nodes.append((name, Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False,
                                   seed=seed + next(counter)), src))
        nodes.append((name + ".bn", _batchnorm(cout, rng), name))
        return name + ".bn"

    h = conv(3, 16, 3, 1, "input", "conv1")
    nodes.append(("relu1", ReLU(), h))
    h, cin = "relu1", 16
    for stage, cout in enumerate((16, 32, 64), start=1):
        for block in range(3):
            name, stride = f"layer{stage}.{block}", 2 if stage > 1 and block == 0 else 1
            a = conv(cin, cout, 3, stride, h, name + ".conv1")
            nodes.append((name + ".relu1", ReLU(), a))
            b = conv(cout, cout, 3, 1, name + ".relu1", name + ".conv2")
            short = h
            if stride != 1 or cin != cout:
                if shortcut == "A":
                    nodes.append((name + ".sub", Slice([0, 0], [2**62, 2**62], [2, 3], [2, 2]), h))
                    p = (cout - cin) // 2
                    nodes.append((name + ".pad", Pad((0, 0, 0, 0, p, cout - cin - p)),
                                  name + ".sub"))
                    short = name + ".pad"
                else:
                    short = conv(cin, cout, 1, stride, h, name + ".shortcut")
            nodes.append((name + ".add", Add(), [b, short]))
            nodes.append((name + ".relu2", ReLU(), name + ".add"))
            h, cin = name + ".relu2", cout
    nodes += [("pool", AvgPool2d(8), h), ("flatten", Flatten(), "pool"),
              ("fc", Linear(64, n_classes, seed=seed), "flatten"),
              ("softmax", Softmax(), "fc")]
    return Graph(nodes)


#: Model constructors by name (the CLI's ``--model`` choices).
ZOO = {f.__name__: f for f in (lenet5, lenet_mnist, mnist_convnet, mlp, digits_net, resnet20)}

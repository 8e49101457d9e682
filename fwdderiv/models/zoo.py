"""Architectures used in the paper and in the adversarial-examples literature.

Every model ends with :class:`~fwdderiv.Softmax`, the paper's output F; ``net[:-1]`` is the
same network with logits Z as output. Layer ``i`` is initialised from ``seed + i``.
"""
from ..core import Sequential
from ..layers import Conv2d, Flatten, Linear, MaxPool2d, Pad2d, ReLU, Softmax


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


#: Model constructors by name (the CLI's ``--model`` choices).
ZOO = {f.__name__: f for f in (lenet5, lenet_mnist, mnist_convnet, mlp, digits_net)}

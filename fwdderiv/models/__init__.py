"""Model zoo: the seed LeNet-5 and the architectures of the adversarial-examples papers."""
from .trained import pretrained, pretrained_info
from .zoo import (ZOO, digits_net, lenet5, lenet_mnist, mlp, mnist_convnet, photo_cnn, resnet18,
                  resnet20, wide_resnet)

__all__ = ["ZOO", "digits_net", "lenet5", "lenet_mnist", "mlp", "mnist_convnet", "photo_cnn",
           "pretrained", "pretrained_info", "resnet18", "resnet20", "wide_resnet"]

"""Model zoo: the seed LeNet-5 and the architectures of the adversarial-examples papers."""
from .trained import pretrained, pretrained_info
from .zoo import ZOO, digits_net, lenet5, lenet_mnist, mlp, mnist_convnet, resnet20

__all__ = ["ZOO", "digits_net", "lenet5", "lenet_mnist", "mlp", "mnist_convnet", "pretrained",
           "pretrained_info", "resnet20"]

"""Optimisers that update parameter arrays in place: SGD with momentum, and Adam.

Both follow PyTorch's update rules (``torch.optim.SGD`` with ``dampening=0`` and
``torch.optim.Adam``, weight decay added to the gradient as an L2 term), so the same
hyper-parameters give the same trajectory in both libraries.
"""
import numpy as np

#: Added to Adam's denominator sqrt(v_hat) so that a parameter with zero gradient
#: history is not divided by zero (PyTorch's default).
ADAM_EPS = 1e-8


def _check_common(name, lr, weight_decay):
    if not np.isfinite(lr) or lr <= 0:
        raise ValueError(f"{name} expected a learning rate lr > 0, got {lr!r}")
    if not np.isfinite(weight_decay) or weight_decay < 0:
        raise ValueError(f"{name} expected weight_decay >= 0, got {weight_decay!r}")


class SGD:
    """Stochastic gradient descent with momentum and L2 weight decay.

    .. math::
        g \\leftarrow g + \\lambda w, \\qquad
        v \\leftarrow \\mu v + g, \\qquad
        w \\leftarrow w - \\eta v

    (on the first step ``v = g``). With ``momentum=0`` this is plain SGD.

    Parameters
    ----------
    params : list of ndarray
        Live parameter arrays; ``step`` updates them in place.
    lr : float
        Learning rate :math:`\\eta`.
    momentum : float, default 0
        :math:`\\mu`, in ``[0, 1)``.
    weight_decay : float, default 0
        :math:`\\lambda`.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.array([1.0])
    >>> SGD([w], lr=0.1).step([2 * w])   # one step on w**2
    >>> w
    array([0.8])
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        _check_common("SGD", lr, weight_decay)
        if not 0 <= momentum < 1:
            raise ValueError(f"SGD expected momentum in [0, 1), got {momentum!r}")
        self.params = list(params)
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self._velocity = [None] * len(self.params)

    def step(self, grads):
        """Apply one update; ``grads[i]`` is the gradient of ``params[i]``."""
        for i, (w, g) in enumerate(zip(self.params, grads, strict=True)):
            if self.weight_decay:
                g = g + self.weight_decay * w
            if self.momentum:
                v = self._velocity[i]
                if v is None:
                    v = self._velocity[i] = np.array(g, dtype=w.dtype, copy=True)
                else:
                    v *= self.momentum
                    v += g
                g = v
            w -= self.lr * g


class Adam:
    """Adam (Kingma and Ba, 2015) with bias correction and L2 weight decay.

    .. math::
        g \\leftarrow g + \\lambda w, \\quad
        m \\leftarrow \\beta_1 m + (1 - \\beta_1) g, \\quad
        v \\leftarrow \\beta_2 v + (1 - \\beta_2) g^2, \\quad
        w \\leftarrow w - \\eta \\, \\frac{m / (1 - \\beta_1^t)}{\\sqrt{v / (1 - \\beta_2^t)} + \\epsilon}

    Parameters
    ----------
    params : list of ndarray
        Live parameter arrays; ``step`` updates them in place.
    lr : float, default 1e-3
    betas : tuple of float, default (0.9, 0.999)
    weight_decay : float, default 0
    eps : float, default ADAM_EPS
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0, eps=ADAM_EPS):
        _check_common("Adam", lr, weight_decay)
        if not all(0 <= b < 1 for b in betas) or len(betas) != 2:
            raise ValueError(f"Adam expected betas (b1, b2) each in [0, 1), got {betas!r}")
        self.params = list(params)
        self.lr = float(lr)
        self.betas = (float(betas[0]), float(betas[1]))
        self.weight_decay = float(weight_decay)
        self.eps = float(eps)
        self._m = [np.zeros_like(w) for w in self.params]
        self._v = [np.zeros_like(w) for w in self.params]
        self._t = 0

    def step(self, grads):
        """Apply one update; ``grads[i]`` is the gradient of ``params[i]``."""
        self._t += 1
        b1, b2 = self.betas
        c1 = 1 - b1 ** self._t
        c2 = 1 - b2 ** self._t
        for w, g, m, v in zip(self.params, grads, self._m, self._v, strict=True):
            if self.weight_decay:
                g = g + self.weight_decay * w
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * (g * g)
            w -= (self.lr / c1) * m / (np.sqrt(v / c2) + self.eps)


def make_optimizer(name, params, lr, momentum=0.0, weight_decay=0.0):
    """Build ``SGD`` (name ``"sgd"``) or ``Adam`` (``"adam"``; ``momentum`` is its beta1 if > 0)."""
    if name == "sgd":
        return SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        betas = (momentum, 0.999) if momentum else (0.9, 0.999)
        return Adam(params, lr=lr, betas=betas, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}")

r"""Gradient attributions: saliency and gradient x input.

Simonyan, Vedaldi, Zisserman, "Deep Inside Convolutional Networks: Visualising Image
Classification Models and Saliency Maps" (2014); Shrikumar et al., "Not Just a Black
Box: Learning Important Features Through Propagating Activation Differences" (2016).
Constructors and ``attribute`` arguments follow Captum's ``Saliency`` and
``InputXGradient``.
"""
import numpy as np

from ._common import ALL, Attribution, budget, gradients, held, prepare


class Saliency(Attribution):
    r"""The gradient of the target output, by default its absolute value.

    .. math:: A_i = \left|\frac{\partial F_t}{\partial x_i}(x)\right|

    Parameters
    ----------
    net : network
        Its output ``(N, K)`` is what is explained (probabilities if it ends in Softmax).

    Examples
    --------
    >>> import numpy as np, fwdderiv as fd
    >>> sal = fd.attribution.Saliency(fd.models.digits_net())
    >>> sal.attribute(np.ones((2, 1, 8, 8)), target=3).shape
    (2, 1, 8, 8)
    >>> sal.attribute(np.ones((2, 1, 8, 8)), target="all").shape
    (2, 10, 1, 8, 8)
    """

    @held
    def attribute(self, inputs, target=None, abs=True, max_memory=None):
        """Attributions of ``inputs``.

        Parameters
        ----------
        inputs : ndarray of shape (N, *S)
        target : int, sequence of N ints, "all" or None
            The output explained: one class for all examples, one per example, every
            class (results ``(N, K, *S)``, from one Jacobian), or None when the network
            has a single output.
        abs : bool, default True
            Return ``|gradient|`` (Captum's default) instead of the signed gradient.
        max_memory : int, optional
            Bytes allowed for the derivative work (default
            :data:`fwdderiv.config.DEFAULT_MAX_MEMORY`).

        Returns
        -------
        ndarray of shape (N, *S), or (N, K, *S) for ``target="all"``
        """
        x, K, t = prepare(self, inputs, target)
        g = gradients(self.net, x, t, K, budget(max_memory, self._where()))
        return np.abs(g) if abs else g


class InputXGradient(Attribution):
    r"""Gradient times input, :math:`A_i = x_i\, \partial F_t/\partial x_i(x)`.

    For a linear model :math:`F_t = w_t \cdot x + b_t` this is :math:`w_t \odot x`.
    ``abs_gradient=True`` gives the variant :math:`A_i = x_i\, |\partial F_t/\partial
    x_i(x)|` used by some attribution write-ups (the saliency map weighted by the input);
    the default is Captum's signed product.

    Examples
    --------
    >>> import numpy as np, fwdderiv as fd
    >>> ixg = fd.attribution.InputXGradient(fd.models.digits_net())
    >>> x = np.ones((2, 1, 8, 8))
    >>> a = ixg.attribute(x, target=3, abs_gradient=True)
    >>> bool(np.all(a >= 0)), a.shape
    (True, (2, 1, 8, 8))
    """

    @property
    def multiplies_by_inputs(self):
        return True

    @held
    def attribute(self, inputs, target=None, max_memory=None, abs_gradient=False):
        """Attributions of ``inputs``; ``target`` and ``max_memory`` as in
        :meth:`Saliency.attribute`.

        Parameters
        ----------
        inputs : ndarray of shape (N, *S)
        target : int, sequence of N ints, "all" or None
        max_memory : int, optional
        abs_gradient : bool, default False
            Multiply the input by ``|gradient|`` instead of the signed gradient (Captum
            has only the signed product, the default here).

        Returns
        -------
        ndarray of shape (N, *S), or (N, K, *S) for ``target="all"``
        """
        x, K, t = prepare(self, inputs, target)
        g = gradients(self.net, x, t, K, budget(max_memory, self._where()))
        if abs_gradient:
            g = np.abs(g)
        return g * (x[:, None] if t is ALL else x)

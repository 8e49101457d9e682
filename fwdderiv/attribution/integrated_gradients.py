r"""Integrated gradients (Sundararajan, Taly, Yan, "Axiomatic Attribution for Deep
Networks", ICML 2017), with Captum's arguments, quadratures and convergence delta."""
import numpy as np

from ._common import (ALL, Attribution, baselines_like, budget, costs, forward, gradients,
                      held, one_hot, prepare, resolve_target, select)
from ._quadrature import approximation_parameters
from ..classifier import check_images, n_outputs


class IntegratedGradients(Attribution):
    r"""The gradient integrated along the straight path from a baseline b to the input x.

    .. math::
        A_i = (x_i - b_i) \int_0^1 \frac{\partial F_t}{\partial x_i}\big(b + \alpha
        (x - b)\big)\, d\alpha \approx (x_i - b_i) \sum_s w_s\,
        \frac{\partial F_t}{\partial x_i}\big(b + \alpha_s (x - b)\big)

    Completeness: :math:`\sum_i A_i = F_t(x) - F_t(b)` up to the quadrature error, which
    ``return_convergence_delta`` reports.

    Parameters
    ----------
    net : network
    multiply_by_inputs : bool, default True
        False returns the integrated gradient without the factor ``x - b`` (Captum's
        "local" attribution).

    Examples
    --------
    >>> import numpy as np, fwdderiv as fd
    >>> ig = fd.attribution.IntegratedGradients(fd.models.digits_net())
    >>> attr, delta = ig.attribute(np.ones((2, 1, 8, 8)), target=[1, 7],
    ...                            return_convergence_delta=True)
    >>> attr.shape, delta.shape
    ((2, 1, 8, 8), (2,))
    """

    def __init__(self, net, multiply_by_inputs=True):
        super().__init__(net)
        self._multiply_by_inputs = bool(multiply_by_inputs)

    @property
    def multiplies_by_inputs(self):
        return self._multiply_by_inputs

    def has_convergence_delta(self):
        return True

    @held
    def attribute(self, inputs, baselines=None, target=None, n_steps=50,
                  method="gausslegendre", internal_batch_size=None,
                  return_convergence_delta=False, max_memory=None):
        """Attributions of ``inputs``.

        Parameters
        ----------
        inputs : ndarray of shape (N, *S)
        baselines : None, float, or ndarray of shape S, (1, *S) or (N, *S)
            Start of the path; None is zeros (a black image).
        target : int, sequence of N ints, "all" or None
            As in :meth:`Saliency.attribute`; ``"all"`` integrates the whole Jacobian
            along the path (one Jacobian per point instead of K gradients).
        n_steps : int, default 50
            Points of the quadrature.
        method : {"gausslegendre", "riemann_left", "riemann_right", "riemann_middle",
                  "riemann_trapezoid"}
            See :mod:`fwdderiv.attribution._quadrature`.
        internal_batch_size : int, optional
            Path points evaluated per pass: ``max(1, internal_batch_size // N)`` steps
            of all N examples at a time (Captum's rule). None: as many as
            ``max_memory`` allows.
        return_convergence_delta : bool
            Also return :meth:`compute_convergence_delta` of the result.
        max_memory : int, optional
            Bytes for the path points, their derivative work and results (default
            :data:`fwdderiv.config.DEFAULT_MAX_MEMORY`).

        Returns
        -------
        attributions : ndarray of shape (N, *S), or (N, K, *S) for ``target="all"``
        delta : ndarray of shape (N,) or (N, K), if ``return_convergence_delta``
        """
        where = self._where()
        x, K, t = prepare(self, inputs, target)
        b = baselines_like(baselines, x, where)
        weights, alphas = approximation_parameters(method, n_steps)
        memory = budget(max_memory, where)
        if internal_batch_size is not None and (
                not isinstance(internal_batch_size, (int, np.integer)) or internal_batch_size < 1):
            raise ValueError(f"{where} expected internal_batch_size as an integer >= 1 or "
                             f"None, got {internal_batch_size!r}")
        N, S = x.shape[0], x.shape[1:]
        D, itemsize = int(np.prod(S)), x.dtype.itemsize
        # one step of all N examples: the points, their gradients (all K for "all") and
        # their derivative work
        per_example, per_dir = costs(self.net, S, itemsize)
        k = K if t is ALL else 1
        per_step = N * (D * itemsize * (1 + k) + per_example + min(k, D) * per_dir)
        steps = max(1, memory // per_step)
        if internal_batch_size is not None:
            steps = min(steps, max(1, internal_batch_size // N))
        diff = x - b
        acc = np.zeros((N, k) + S if t is ALL else x.shape, dtype=np.float64)
        # a network with path_vjp sums a chunk's steps itself (and runs its leading
        # linear layers on x and b only), when the chunk fits in one reverse pass
        by_path = callable(getattr(self.net, "path_vjp", None)) and \
            (t is not ALL or K <= D) and per_step * steps <= memory
        if by_path:
            acc += self.net.path_vjp(b, x, alphas, weights, one_hot(t, N, K, x.dtype),
                                     steps=steps).reshape(acc.shape)
        for s0 in range(0, n_steps if not by_path else 0, steps):
            s1 = min(s0 + steps, n_steps)
            a = alphas[s0:s1].astype(x.dtype).reshape((-1, 1) + (1,) * len(S))
            points = (b[None] + a * diff[None]).reshape((-1,) + S)     # step-major
            tt = t if t is ALL else np.tile(t, s1 - s0)
            g = gradients(self.net, points, tt, K, memory)
            # the weighted sum of this chunk's steps in the gradients' dtype (a float64
            # tensordot would first copy float32 gradients to float64), added in float64
            w = weights[s0:s1].astype(g.dtype)
            acc += (w @ g.reshape(s1 - s0, -1)).reshape(acc.shape)
        acc = acc.astype(x.dtype)
        attr = acc * (diff[:, None] if t is ALL else diff) if self._multiply_by_inputs else acc
        if return_convergence_delta:
            return attr, self.compute_convergence_delta(attr, b, x, target=target,
                                                        max_memory=memory)
        return attr

    def compute_convergence_delta(self, attributions, start_point, end_point, target=None,
                                  max_memory=None):
        r"""Captum's convergence delta: per example (and class),
        :math:`\sum_i A_i - (F_t(\text{end}) - F_t(\text{start}))`.

        Parameters
        ----------
        attributions : ndarray of shape (N, *S), or (N, K, *S) for ``target="all"``
        start_point : None, float or ndarray
            The baselines (broadcast as in :meth:`attribute`).
        end_point : ndarray of shape (N, *S)
            The inputs.
        target : as in :meth:`attribute`

        Returns
        -------
        ndarray of shape (N,), or (N, K) for ``target="all"``
        """
        where = f"{type(self).__name__}.compute_convergence_delta"
        x = check_images(end_point, where, "end_point")
        K = n_outputs(self.net, x.shape[1:], where)
        t = resolve_target(target, len(x), K, where)
        b = baselines_like(start_point, x, where)
        memory = budget(max_memory, where)
        gain = select(forward(self.net, x, memory), t) - select(forward(self.net, b, memory), t)
        lead = 2 if t is ALL else 1
        a = np.asarray(attributions)
        return a.reshape(a.shape[:lead] + (-1,)).sum(axis=-1) - gain

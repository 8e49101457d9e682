r"""SmoothGrad and its variants around any attribution method (Smilkov et al.,
"SmoothGrad: removing noise by adding noise", 2017; Adebayo et al., "Local Explanation
Methods for Deep Neural Networks Lack Sensitivity to Parameter Values", 2018, for
VarGrad), with Captum's ``NoiseTunnel`` arguments."""
import numbers

import numpy as np

from ._common import Attribution, check_images, expand_target, held

#: The ``nt_type`` values.
NT_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")


class NoiseTunnel(Attribution):
    r"""Average an attribution over noisy copies of the input.

    With :math:`A(x + \epsilon_j)`, :math:`\epsilon_j \sim \mathcal{N}(0, \sigma^2 I)`,
    :math:`j = 1..n`: ``smoothgrad`` returns the mean, ``smoothgrad_sq`` the mean of
    squares, ``vargrad`` their variance (mean of squares minus squared mean).

    Parameters
    ----------
    attribution_method : Attribution
        A fwdderiv attribution object (Saliency, InputXGradient, IntegratedGradients,
        Occlusion).
    """

    def __init__(self, attribution_method):
        if not isinstance(attribution_method, Attribution) or isinstance(
                attribution_method, NoiseTunnel):
            raise TypeError(
                "NoiseTunnel expected a fwdderiv attribution object such as "
                f"fd.attribution.Saliency(net), got {type(attribution_method).__name__}")
        super().__init__(attribution_method.net)
        self.attribution_method = attribution_method

    @property
    def multiplies_by_inputs(self):
        return self.attribution_method.multiplies_by_inputs

    def has_convergence_delta(self):
        return self.attribution_method.has_convergence_delta()

    def _noise(self, shape, stdev, rng):
        """Gaussian noise of standard deviation ``stdev`` (a hook: tests replace it)."""
        return rng.normal(0.0, stdev, size=shape)

    @held
    def attribute(self, inputs, nt_type="smoothgrad", nt_samples=5, nt_samples_batch_size=None,
                  stdevs=1.0, draw_baseline_from_distrib=False, seed=None, **kwargs):
        """Smoothed attributions of ``inputs``.

        Parameters
        ----------
        inputs : ndarray of shape (N, *S)
        nt_type : {"smoothgrad", "smoothgrad_sq", "vargrad"}
        nt_samples : int, default 5
            Noisy copies per example.
        nt_samples_batch_size : int, optional
            Copies per example attributed in one call of the wrapped method (default
            all of them).
        stdevs : float, default 1.0
            Standard deviation of the noise, in input units.
        draw_baseline_from_distrib : bool
            Only False (Captum uses it for methods with sampled baselines, none here).
        seed : int or numpy Generator, optional
            Seeds the noise (Captum draws from torch's global generator).
        **kwargs
            Passed to the wrapped method's ``attribute`` (``target``, ``baselines``,
            ``return_convergence_delta``, ``max_memory``...). Per-example targets and
            baselines are repeated for the noisy copies.

        Returns
        -------
        attributions : ndarray shaped like the wrapped method's result
        delta : ndarray of shape (N * nt_samples,), if the wrapped method returns one
            One delta per noisy copy, in Captum's order.
        """
        where = self._where()
        x = check_images(inputs, where, "inputs")
        if nt_type not in NT_TYPES:
            raise ValueError(f"{where} expected nt_type in {NT_TYPES}, got {nt_type!r}")
        if not isinstance(nt_samples, numbers.Integral) or nt_samples < 1:
            raise ValueError(f"{where} expected nt_samples as an integer >= 1, got "
                             f"{nt_samples!r}")
        if not isinstance(stdevs, numbers.Real) or not np.isfinite(stdevs) or stdevs < 0:
            raise ValueError(f"{where} expected stdevs as a number >= 0, got {stdevs!r}")
        if draw_baseline_from_distrib:
            raise ValueError(f"{where}: draw_baseline_from_distrib=True is not supported; "
                             "no fwdderiv method samples its baselines")
        if nt_samples_batch_size is not None and (
                not isinstance(nt_samples_batch_size, numbers.Integral) or nt_samples_batch_size < 1):
            raise ValueError(f"{where} expected nt_samples_batch_size as an integer >= 1 or "
                             f"None, got {nt_samples_batch_size!r}")
        k = nt_samples if nt_samples_batch_size is None else min(nt_samples, nt_samples_batch_size)
        sizes = [k] * (nt_samples // k) + ([nt_samples % k] if nt_samples % k else [])
        want_delta = bool(kwargs.get("return_convergence_delta", False))
        rng = np.random.default_rng(seed)
        N = len(x)
        total = total_sq = None
        deltas = []
        for size in sizes:
            noisy = np.repeat(x, size, axis=0) + np.asarray(
                self._noise((N * size,) + x.shape[1:], float(stdevs), rng))
            out = self.attribution_method.attribute(noisy.astype(x.dtype),
                                                    **self._expand(kwargs, N, size))
            if want_delta:
                out, delta = out
                deltas.append(delta)
            out = out.reshape((N, size) + out.shape[1:]).astype(np.float64)
            s, sq = out.sum(axis=1), (out ** 2).sum(axis=1)
            total = s if total is None else total + s
            total_sq = sq if total_sq is None else total_sq + sq
        mean, mean_sq = total / nt_samples, total_sq / nt_samples
        attr = {"smoothgrad": mean, "smoothgrad_sq": mean_sq,
                "vargrad": mean_sq - mean ** 2}[nt_type].astype(x.dtype)
        return (attr, np.concatenate(deltas)) if want_delta else attr

    @staticmethod
    def _expand(kwargs, n, size):
        out = dict(kwargs)
        if "target" in out and out["target"] is not None:
            t = out["target"]
            if not isinstance(t, (str, numbers.Integral)):
                out["target"] = expand_target(np.asarray(t), size)
        b = out.get("baselines")
        if isinstance(b, np.ndarray) and b.ndim >= 1 and b.shape[0] == n and n > 1:
            out["baselines"] = np.repeat(b, size, axis=0)
        return out

r"""Attributions while a network trains: a callback for :func:`fwdderiv.training.fit`.

:class:`AttributionRecorder` records chosen inputs' attributions every ``every`` updates
(watch gradient x input go from noise to the strokes the network uses) and writes them as
an animated GIF or a PNG strip. It also sums the inputs' gradients over the recorded
updates: the "integrated over training" attribution,

.. math::
    A_i = (x_i - b_i)\, \frac{1}{|T|} \sum_{s \in T} \frac{\partial F_t}{\partial x_i}(x;
    \theta_s),

which averages over the parameters :math:`\theta_s` met during training, where integrated
gradients average over a path of inputs from a baseline b.
"""
import numpy as np

from ._common import ALL, baselines_like, check_images, gradients, n_outputs, resolve_target
from ..config import DEFAULT_MAX_MEMORY

#: Methods the recorder draws.
RECORDED = ("input_x_gradient", "saliency", "gradient")


class AttributionRecorder:
    """Record attributions of fixed inputs every ``every`` updates of ``fit``.

    Parameters
    ----------
    inputs : ndarray of shape (N, *S)
        The inputs watched.
    target : int, sequence of N ints, or "all"
        The explained output (e.g. the labels of the inputs).
    method : {"input_x_gradient", "saliency", "gradient"}
        What each frame holds: gradient x input, |gradient|, or the signed gradient.
    every : int
        Record after every ``every``-th update (and never more).
    baselines : None, float or ndarray
        ``b`` of :meth:`integrated` (default zeros).

    Examples
    --------
    >>> rec = AttributionRecorder(ds.x_test[:4], ds.y_test[:4], every=20)  # doctest: +SKIP
    >>> fd.training.fit(net, x, y, callbacks=[rec])                          # doctest: +SKIP
    >>> rec.save_gif("ixg.gif"); rec.save_strip("ixg.png")                   # doctest: +SKIP
    """

    def __init__(self, inputs, target, method="input_x_gradient", every=10, baselines=None,
                 max_memory=None):
        where = "AttributionRecorder"
        self.x = check_images(inputs, where, "inputs")
        if method not in RECORDED:
            raise ValueError(f"{where} expected method in {RECORDED}, got {method!r}")
        if not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"{where} expected every as an integer >= 1, got {every!r}")
        self.target, self.method, self.every = target, method, int(every)
        self.b = baselines_like(baselines, self.x, where)
        self.max_memory = max_memory or DEFAULT_MAX_MEMORY
        self.steps, self.frames = [], []
        self._grad_sum = None

    def __call__(self, net, step):
        if step % self.every:
            return
        K = n_outputs(net, self.x.shape[1:], "AttributionRecorder")
        t = resolve_target(self.target, len(self.x), K, "AttributionRecorder")
        g = gradients(net, self.x, t, K, self.max_memory)
        x = self.x[:, None] if t is ALL else self.x
        frame = {"input_x_gradient": g * x, "saliency": np.abs(g), "gradient": g}[self.method]
        self.steps.append(step)
        self.frames.append(frame)
        self._grad_sum = g.astype(np.float64) if self._grad_sum is None else self._grad_sum + g

    def integrated(self):
        """The inputs' gradients averaged over the recorded updates, times ``x - b``:
        shape like a frame."""
        if self._grad_sum is None:
            raise ValueError("AttributionRecorder.integrated: nothing recorded yet; pass the "
                             "recorder to fit(..., callbacks=[recorder]) first")
        diff = self.x - self.b
        if self._grad_sum.ndim == self.x.ndim + 1:
            diff = diff[:, None]
        return (self._grad_sum / len(self.frames) * diff).astype(self.x.dtype)

    def _panels(self, frame):
        """(N, H, W) images of one frame: channels summed, class 0 of 'all' targets."""
        a = frame[:, 0] if frame.ndim == self.x.ndim + 1 else frame
        return a.reshape(a.shape[0], a.shape[1], *a.shape[-2:]).sum(axis=1)

    def _figure(self, frames, steps, plt):
        n = len(self.x)
        fig, axes = plt.subplots(n, len(frames), figsize=(1.2 * len(frames), 1.25 * n),
                                 squeeze=False)
        for c, (frame, step) in enumerate(zip(frames, steps)):
            panels = self._panels(frame)
            for r in range(n):
                top = float(np.abs(panels[r]).max()) or 1.0
                axes[r, c].imshow(panels[r], cmap="bwr", vmin=-top, vmax=top)
                axes[r, c].set_xticks([])
                axes[r, c].set_yticks([])
            axes[0, c].set_title(f"step {step}", fontsize=7)
        fig.tight_layout()
        return fig

    def save_strip(self, path, max_frames=12):
        """A PNG: one row per input, one column per recorded step (at most
        ``max_frames``, evenly spaced)."""
        from ..attacks.plots import require_matplotlib

        plt = require_matplotlib("AttributionRecorder")
        if not self.frames:
            raise ValueError("AttributionRecorder.save_strip: nothing recorded yet")
        pick = np.unique(np.linspace(0, len(self.frames) - 1, max_frames).round().astype(int))
        fig = self._figure([self.frames[i] for i in pick], [self.steps[i] for i in pick], plt)
        fig.savefig(path, dpi=100)
        plt.close(fig)

    def save_gif(self, path, duration=200):
        """An animated GIF, one frame per recorded step (Pillow, installed with
        matplotlib)."""
        import io

        from PIL import Image

        from ..attacks.plots import require_matplotlib

        plt = require_matplotlib("AttributionRecorder")
        if not self.frames:
            raise ValueError("AttributionRecorder.save_gif: nothing recorded yet")
        images = []
        for frame, step in zip(self.frames, self.steps):
            fig = self._figure([frame], [step], plt)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=80)
            plt.close(fig)
            buf.seek(0)
            images.append(Image.open(buf).convert("P"))
        images[0].save(path, save_all=True, append_images=images[1:], duration=duration,
                       loop=0)

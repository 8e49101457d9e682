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

#: Methods the recorder draws: gradient x input (Captum's signed product), |gradient| x
#: input, |gradient| (saliency) and the signed gradient.
RECORDED = ("input_x_gradient", "abs_input_x_gradient", "saliency", "gradient")

#: How far from 1 the rows of a network's output may sum and still be called
#: probabilities ("p") in the figures' titles; other outputs are called "F".
PROBABILITY_SUM_TOL = 1e-3


class AttributionRecorder:
    """Record attributions of fixed inputs every ``every`` updates of ``fit``.

    Parameters
    ----------
    inputs : ndarray of shape (N, *S)
        The inputs watched; images (N, C, H, W) for the figures (one channel is drawn in
        grey, three as RGB in [0, 1]).
    target : int, sequence of N ints, or "all"
        The explained output (e.g. the labels of the inputs).
    method : {"input_x_gradient", "abs_input_x_gradient", "saliency", "gradient"}
        What each frame holds: gradient x input, |gradient| x input, |gradient|, or the
        signed gradient.
    every : int
        Record after every ``every``-th update (and never more).
    record_steps : sequence of int, optional
        Record after exactly these updates (counted from 1) instead of every
        ``every``-th, e.g. spaced geometrically to show the early updates, where the
        attributions change most.
    baselines : None, float or ndarray
        ``b`` of :meth:`integrated` (default zeros).
    max_memory : int, optional
        Bytes the gradients of one frame may use (default
        :data:`fwdderiv.config.DEFAULT_MAX_MEMORY`).
    classes : sequence of str, optional
        The name of each class (``Dataset.classes``), for the figures' titles; without
        it classes are shown by index.

    Attributes
    ----------
    steps : list of int
        The updates after which a frame was recorded.
    frames : list of ndarray
        One per step, shaped like ``inputs`` ((N, K, *S) for ``target="all"``).
    outputs : list of ndarray of shape (N, K)
        The network's outputs on ``inputs`` at each recorded step.

    Examples
    --------
    >>> rec = AttributionRecorder(ds.x_test[:4], ds.y_test[:4], every=20,
    ...                           classes=ds.classes)                      # doctest: +SKIP
    >>> fd.training.fit(net, x, y, callbacks=[rec])                          # doctest: +SKIP
    >>> rec.save_gif("ixg.gif"); rec.save_strip("ixg.png")                   # doctest: +SKIP
    """

    def __init__(self, inputs, target, method="input_x_gradient", every=10, baselines=None,
                 max_memory=None, classes=None, record_steps=None):
        where = "AttributionRecorder"
        self.x = check_images(inputs, where, "inputs")
        if method not in RECORDED:
            raise ValueError(f"{where} expected method in {RECORDED}, got {method!r}")
        if not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"{where} expected every as an integer >= 1, got {every!r}")
        self.target, self.method, self.every = target, method, int(every)
        self.b = baselines_like(baselines, self.x, where)
        self.max_memory = max_memory or DEFAULT_MAX_MEMORY
        self.classes = _check_classes(classes, where)
        self.record_steps = _check_steps(record_steps, where)
        self.steps, self.frames, self.outputs = [], [], []
        self._grad_sum = None

    def __call__(self, net, step):
        wanted = step % self.every == 0 if self.record_steps is None \
            else step in self.record_steps
        if not wanted:
            return
        K = n_outputs(net, self.x.shape[1:], "AttributionRecorder")
        t = resolve_target(self.target, len(self.x), K, "AttributionRecorder")
        g = gradients(net, self.x, t, K, self.max_memory)
        x = self.x[:, None] if t is ALL else self.x
        frame = _frame(self.method, g, x)
        self.steps.append(step)
        self.frames.append(frame)
        self.outputs.append(np.asarray(net(self.x)).reshape(len(self.x), -1))
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

    def _class_name(self, k):
        if self.classes is not None and k < len(self.classes) and self.classes[k] != str(k):
            return self.classes[k]
        return f"class {k}"

    def _shown_classes(self, K):
        """The class drawn in each row: the target (class 0 for ``"all"``)."""
        t = resolve_target(self.target, len(self.x), K, "AttributionRecorder")
        return np.zeros(len(self.x), dtype=int) if t is ALL else np.asarray(t)

    def _panels(self, frame):
        """(N, H, W) images of one frame: channels summed, class 0 of 'all' targets."""
        a = frame[:, 0] if frame.ndim == self.x.ndim + 1 else frame
        return a.reshape(a.shape[0], -1, *a.shape[-2:]).sum(axis=1)

    def _figure(self, picks, plt):
        """The input column, then one column per recorded frame in ``picks`` (indices
        into ``frames``); rows titled with the class drawn, cells with the step and the
        network's output for that class."""
        n = len(self.x)
        shown = self._shown_classes(self.outputs[0].shape[1])
        word = "p" if _probabilities(self.outputs[0]) else "F"
        fig, axes = plt.subplots(n, 1 + len(picks), squeeze=False,
                                 figsize=(1.25 * (1 + len(picks)), 1.35 * n))
        for r in range(n):
            axes[r, 0].imshow(_picture(self.x[r]), cmap="gray", vmin=0, vmax=1)
            axes[r, 0].set_title(self._class_name(int(shown[r])), fontsize=7)
        for c, i in enumerate(picks, 1):
            panels = self._panels(self.frames[i])
            for r in range(n):
                top = float(np.abs(panels[r]).max()) or 1.0
                axes[r, c].imshow(panels[r], cmap="bwr", vmin=-top, vmax=top)
                value = float(self.outputs[i][r, shown[r]])
                axes[r, c].set_title(f"step {self.steps[i]}\n{word} = {value:.2f}", fontsize=6)
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.tight_layout()
        return fig

    def _require_frames(self, who):
        if not self.frames:
            raise ValueError(f"AttributionRecorder.{who}: nothing recorded yet; pass the "
                             "recorder to fit(..., callbacks=[recorder]) first")
        if self.x.ndim not in (3, 4):
            raise ValueError(f"AttributionRecorder.{who} draws images: expected inputs of "
                             f"shape (N, C, H, W) or (N, H, W), got {self.x.shape}; use "
                             "the recorded frames directly for other inputs")

    def save_strip(self, path, max_frames=12):
        """A PNG: the inputs in the first column, then one column per recorded step (at
        most ``max_frames``, evenly spaced); each row is titled with its class."""
        from ..attacks.plots import require_matplotlib

        plt = require_matplotlib("AttributionRecorder")
        self._require_frames("save_strip")
        pick = np.unique(np.linspace(0, len(self.frames) - 1, max_frames).round().astype(int))
        fig = self._figure([int(i) for i in pick], plt)
        fig.savefig(path, dpi=100)
        plt.close(fig)

    def save_gif(self, path, duration=200):
        """An animated GIF, one frame per recorded step (the inputs beside it), written
        with Pillow (installed with matplotlib)."""
        import io

        from PIL import Image

        from ..attacks.plots import require_matplotlib

        plt = require_matplotlib("AttributionRecorder")
        self._require_frames("save_gif")
        images = []
        for i in range(len(self.frames)):
            fig = self._figure([i], plt)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=80)
            plt.close(fig)
            buf.seek(0)
            images.append(Image.open(buf).convert("P"))
        images[0].save(path, save_all=True, append_images=images[1:], duration=duration,
                       loop=0)


def _frame(method, g, x):
    """One frame of ``method`` from the gradients ``g`` and the inputs ``x`` (same shape)."""
    if method == "input_x_gradient":
        return g * x
    if method == "abs_input_x_gradient":
        return np.abs(g) * x
    return np.abs(g) if method == "saliency" else g


def _check_classes(classes, where):
    """``classes`` as a tuple of str, or None."""
    if classes is None:
        return None
    if isinstance(classes, str) or not all(isinstance(c, str) for c in classes):
        raise TypeError(f"{where} expected classes as a sequence of class names (str), e.g. "
                        f"Dataset.classes, got {classes!r}")
    return tuple(classes)


def _check_steps(steps, where):
    """``steps`` as a frozenset of update numbers >= 1, or None."""
    if steps is None:
        return None
    try:
        values = [int(s) for s in steps if int(s) == s]
    except (TypeError, ValueError):
        values = []
    if not values or len(values) != len(steps) or min(values) < 1:
        raise ValueError(f"{where} expected record_steps as a non-empty sequence of update "
                         f"numbers >= 1 (fit counts updates from 1), got {steps!r}")
    return frozenset(values)


def _picture(img):
    """One input (C, H, W) or (H, W) as matplotlib draws it: grey (H, W) for one channel,
    RGB (H, W, 3) clipped to [0, 1] for three, else the mean over the channels."""
    if img.ndim == 2:
        return img
    if img.shape[0] == 3:
        return np.clip(np.moveaxis(img, 0, -1), 0, 1)
    return img[0] if img.shape[0] == 1 else img.mean(axis=0)


def _probabilities(out):
    """True if every row of ``out`` (N, K) is a probability vector."""
    return bool(np.all(out >= 0) and np.allclose(out.sum(axis=1), 1, atol=PROBABILITY_SUM_TOL))

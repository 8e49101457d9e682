"""A per-epoch progress bar showing loss and accuracy: tqdm when installed, else plain text."""
import sys
import time


def progress_enabled(progress, stream=None):
    """Resolve ``progress=None`` (auto: on only when ``stream`` is a terminal) to a bool."""
    if progress is None:
        stream = sys.stderr if stream is None else stream
        isatty = getattr(stream, "isatty", None)
        return bool(isatty and isatty())
    return bool(progress)


class _PlainBar:
    """Fallback bar: one carriage-return line on ``stream``, redrawn at most 10 times a second."""

    WIDTH = 24

    def __init__(self, total, desc, stream):
        self.total, self.desc, self.stream = total, desc, stream
        self.n = 0
        self.postfix = ""
        self._last = 0.0
        self._start = time.perf_counter()

    def update(self, k):
        self.n += k
        now = time.perf_counter()
        if now - self._last >= 0.1 or self.n >= self.total:
            self._last = now
            self._draw()

    def set_postfix_str(self, text, refresh=False):
        self.postfix = text

    def _draw(self):
        frac = self.n / self.total if self.total else 1.0
        filled = int(round(frac * self.WIDTH))
        bar = "#" * filled + "." * (self.WIDTH - filled)
        elapsed = time.perf_counter() - self._start
        self.stream.write(f"\r{self.desc} [{bar}] {self.n}/{self.total} "
                          f"{elapsed:.1f}s {self.postfix}")
        self.stream.flush()

    def close(self):
        self._draw()
        self.stream.write("\n")
        self.stream.flush()


class _NoBar:
    def update(self, k):
        pass

    def set_postfix_str(self, text, refresh=False):
        pass

    def close(self):
        pass


def make_bar(total, desc, enabled, stream=None):
    """A bar with ``update(k)``, ``set_postfix_str(s)`` and ``close()``.

    Parameters
    ----------
    total : int
        Number of examples in the epoch.
    desc : str
        Label on the left, e.g. ``"epoch 2/5"``.
    enabled : bool
        False gives a bar that prints nothing.
    stream : file, optional
        Where to draw (default ``sys.stderr``).
    """
    if not enabled:
        return _NoBar()
    stream = sys.stderr if stream is None else stream
    try:
        from tqdm import tqdm
    except ImportError:
        return _PlainBar(total, desc, stream)
    return tqdm(total=total, desc=desc, file=stream, unit="ex", leave=True,
                dynamic_ncols=True)

"""The one progress bar of fwdderiv: tqdm when installed, a plain text line otherwise.

Training epochs, JSMA crafting and the command line all draw through :func:`make_bar`;
:func:`progress_enabled` is the one rule for when a bar is shown (``progress=None``: only
when the stream is a terminal, so logs and pipes get no bar updates).
"""
import shutil
import sys
import time

#: Width used when the terminal reports none (or an unusably narrow one): tqdm sized to a
#: zero-width terminal prints one line per update.
FALLBACK_COLUMNS = 80
MIN_COLUMNS = 40


def progress_enabled(progress, stream=None):
    """Resolve ``progress`` to a bool: ``None`` means on only when ``stream`` (default
    ``sys.stderr``) is a terminal; True and False are taken as they are."""
    if progress is None:
        stream = sys.stderr if stream is None else stream
        isatty = getattr(stream, "isatty", None)
        try:
            return bool(isatty and isatty())
        except ValueError:                   # a closed stream
            return False
    return bool(progress)


def terminal_columns():
    """The terminal's width, or FALLBACK_COLUMNS when it reports less than MIN_COLUMNS."""
    columns = shutil.get_terminal_size((FALLBACK_COLUMNS, 24)).columns
    return columns if columns >= MIN_COLUMNS else FALLBACK_COLUMNS


class PlainBar:
    """Fallback bar: one carriage-return line, redrawn at most 10 times a second."""

    WIDTH = 24

    def __init__(self, total, desc, stream, unit):
        self.total, self.desc, self.stream, self.unit = total, desc, stream, unit
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
        self.stream.write(f"\r{self.desc} [{bar}] {self.n}/{self.total} {self.unit} "
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


def make_bar(total, desc, enabled, stream=None, unit="ex", bar_format=None):
    """A bar with ``update(k)``, ``set_postfix_str(s)`` and ``close()``.

    Parameters
    ----------
    total : int
        Number of items the bar counts to.
    desc : str
        Label on the left, saying what is counted (e.g. ``"epoch 2/5"``).
    enabled : bool
        False gives a bar that prints nothing (resolve ``None`` with
        :func:`progress_enabled` first).
    stream : file, optional
        Where to draw (default ``sys.stderr``).
    unit : str, optional
        What one item is (``"ex"``, ``"sample"``).
    bar_format : str, optional
        tqdm's ``bar_format`` (ignored by the plain text bar).

    Returns
    -------
    bar : object
        tqdm's bar when tqdm is installed, else a plain text line; a silent bar when
        ``enabled`` is False.
    """
    if not enabled:
        return _NoBar()
    stream = sys.stderr if stream is None else stream
    try:
        from tqdm import tqdm
    except ImportError:
        return PlainBar(total, desc, stream, unit)
    return tqdm(total=total, desc=desc, file=stream, unit=unit, leave=True,
                ncols=terminal_columns(), bar_format=bar_format)

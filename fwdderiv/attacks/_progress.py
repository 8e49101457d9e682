"""Progress of a crafting run, drawn with fwdderiv's one bar (:mod:`fwdderiv.progress`).

Samples finish at different iterations: a sample that reaches its target stops early,
one that fails runs until its distortion budget is spent. The running success rate is
therefore among the samples *finished so far*, and it starts high and falls as the hard
samples finish; the label says so.
"""
from fwdderiv.progress import make_bar

#: "jsma: 120/900 samples finished, success 57.8% of them |###   | 00:07<00:45"
BAR_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit}{postfix} |{bar}| {elapsed}<{remaining}"


class _Bar:
    def __init__(self, total, desc):
        self.bar = make_bar(total, desc, True, unit="samples finished",
                            bar_format=BAR_FORMAT)
        self.done = 0

    def update(self, k, n_success):
        self.done += k
        self.bar.update(k)
        if self.done:
            self.bar.set_postfix_str(
                f"success {n_success / self.done:.1%} of them", refresh=False)

    def close(self):
        self.bar.close()


class _Callback:
    def __init__(self, fn, total):
        self.fn, self.total, self.done = fn, total, 0

    def update(self, k, n_success):
        self.done += k
        self.fn(self.done, self.total, n_success)

    def close(self):
        pass


class _Null:
    def update(self, k, n_success):
        pass

    def close(self):
        pass


def make_progress(progress, total, desc):
    """``progress``: None/False (silent), True (a bar: samples finished and the success
    rate among them), or a callable ``fn(done, total, n_success)`` called whenever
    samples finish."""
    if progress is None or progress is False:
        return _Null()
    if progress is True:
        return _Bar(total, desc)
    if callable(progress):
        return _Callback(progress, total)
    raise TypeError(f"{desc} expected progress=None, True, False or a callable "
                    f"fn(done, total, n_success), got {type(progress).__name__}.")

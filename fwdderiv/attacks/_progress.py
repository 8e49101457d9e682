"""A progress reporter for long crafting runs: tqdm when installed, plain text otherwise."""
import sys


class _Text:
    def __init__(self, total, desc):
        self.total, self.desc, self.done = total, desc, 0

    def update(self, k, n_success):
        self.done += k
        rate = n_success / self.done if self.done else 0.0
        sys.stderr.write(f"\r{self.desc}: {self.done}/{self.total} crafted, "
                         f"success {rate:.1%}")
        sys.stderr.flush()

    def close(self):
        sys.stderr.write("\n")


class _Tqdm:
    def __init__(self, total, desc):
        from tqdm.auto import tqdm
        self.bar = tqdm(total=total, desc=desc, unit="sample")
        self.done = 0

    def update(self, k, n_success):
        self.done += k
        self.bar.update(k)
        if self.done:
            self.bar.set_postfix(success=f"{n_success / self.done:.1%}", refresh=False)

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
    """``progress``: None/False (silent), True (tqdm, or text if tqdm is missing), or a
    callable ``fn(done, total, n_success)`` called whenever samples finish."""
    if progress is None or progress is False:
        return _Null()
    if progress is True:
        try:
            return _Tqdm(total, desc)
        except ImportError:
            return _Text(total, desc)
    if callable(progress):
        return _Callback(progress, total)
    raise TypeError(f"{desc} expected progress=None, True, False or a callable "
                    f"fn(done, total, n_success), got {type(progress).__name__}.")

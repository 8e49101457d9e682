"""The per-epoch progress bar of :func:`fwdderiv.training.fit`: fwdderiv's one bar
(:mod:`fwdderiv.progress`), re-exported here where the trainer has always found it."""
from fwdderiv.progress import PlainBar, make_bar, progress_enabled  # noqa: F401

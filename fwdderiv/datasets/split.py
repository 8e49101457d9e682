"""Deterministic stratified train/test splits."""
import numpy as np

__all__ = ["stratified_split"]


def stratified_split(y, n_test, seed=0):
    """Split indices into train and test sets with the class proportions of ``y``.

    Each class c with n_c examples sends ``round(n_test * n_c / N)`` of them to the
    test set, the rounding done by largest remainder (ties to the smaller class label)
    so that the test set has exactly ``n_test`` examples; which examples go is drawn
    with ``numpy.random.default_rng(seed)``. The result depends only on ``y``,
    ``n_test`` and ``seed``.

    Parameters
    ----------
    y : array_like of shape (N,), integer
        Class labels.
    n_test : int
        Size of the test set, 0 < n_test < N.
    seed : int, optional
        Seed of the random choice within each class.

    Returns
    -------
    train : ndarray of shape (N - n_test,), int64
        Sorted indices of the training examples.
    test : ndarray of shape (n_test,), int64
        Sorted indices of the test examples; disjoint from ``train``.

    Raises
    ------
    ValueError
        If ``y`` is not 1-D or ``n_test`` is out of range.

    Examples
    --------
    >>> train, test = stratified_split([0, 0, 0, 0, 1, 1, 1, 1], n_test=4)
    >>> len(train), len(test)
    (4, 4)
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"stratified_split: expected labels of shape (N,), got {y.shape}; "
                         "pass one label per example")
    n = len(y)
    if not 0 < n_test < n:
        raise ValueError(f"stratified_split: n_test must be in 1..{n - 1} for {n} "
                         f"examples, got {n_test}")
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    exact = n_test * counts / n
    take = np.floor(exact).astype(np.int64)
    short = n_test - take.sum()
    order = np.lexsort((np.arange(len(classes)), -(exact - take)))  # largest remainder first
    take[order[:short]] += 1
    rng = np.random.default_rng(seed)
    test = [rng.permutation(np.flatnonzero(inverse == c))[:take[c]]
            for c in range(len(classes))]
    test = np.sort(np.concatenate(test)).astype(np.int64)
    mask = np.ones(n, dtype=bool)
    mask[test] = False
    return np.flatnonzero(mask).astype(np.int64), test

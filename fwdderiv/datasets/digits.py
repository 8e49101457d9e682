"""The 8x8 handwritten digits bundled with scikit-learn: real data, no download.

1,797 images of the digits 0..9, 8x8 pixels with integer values 0..16 (the UCI "Optical
Recognition of Handwritten Digits" test set, as shipped in ``sklearn.datasets``). This
is the offline default of fwdderiv: every demo runs on it without MNIST.
"""
import numpy as np

__all__ = ["DIGITS_MAX", "load_digits"]

#: Largest pixel value in the scikit-learn digits (each pixel counts 0..16 dots).
DIGITS_MAX = 16.0


def load_digits():
    """Load the scikit-learn 8x8 digits as float images in [0, 1].

    Returns
    -------
    x : ndarray of shape (1797, 1, 8, 8), float32
        Pixel values divided by 16, so in [0, 1].
    y : ndarray of shape (1797,), int64
        Digit labels 0..9.

    Raises
    ------
    ImportError
        If scikit-learn is not installed (``pip install fwdderiv[data]``).

    Examples
    --------
    >>> x, y = load_digits()
    >>> x.shape, x.dtype, int(y[0])
    ((1797, 1, 8, 8), dtype('float32'), 0)
    """
    try:
        from sklearn.datasets import load_digits as _sklearn_digits
    except ImportError as exc:
        raise ImportError(
            "fwdderiv.datasets.load_digits reads the 8x8 digits bundled with scikit-learn, "
            "which is not installed; install it with `pip install fwdderiv[data]` (or "
            "`pip install scikit-learn`), or use MNIST: load_dataset('mnist', data_dir=...)"
        ) from exc
    bunch = _sklearn_digits()
    images = np.asarray(bunch.images, dtype=np.float64)
    if images.min() < 0 or images.max() > DIGITS_MAX:
        raise ValueError(f"load_digits: scikit-learn returned pixel values in "
                         f"[{images.min()}, {images.max()}], expected [0, {DIGITS_MAX}]; "
                         "this scikit-learn version ships different data")
    x = (images / DIGITS_MAX).astype(np.float32)[:, None]
    return x, np.asarray(bunch.target, dtype=np.int64)

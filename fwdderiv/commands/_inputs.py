"""Models and real input batches for the command line."""
import numpy as np

from .. import datasets, models


def model_and_images(model, data_dir, batch, trained, seed=0, progress=None):
    """A model from the zoo and a batch of real images shaped for it.

    Without ``data_dir`` the images are scikit-learn's 8x8 digits (offline); models that
    take 28x28 or 32x32 images get them upsampled by pixel repetition (then zero-padded).
    With ``data_dir`` they are the MNIST test images found there.
    """
    if model not in models.ZOO:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(models.ZOO)}")
    dataset = "mnist" if data_dir else "digits"
    if trained:
        net = models.pretrained(model, dataset=dataset, data_dir=data_dir, seed=seed,
                                progress=progress)
    else:
        net = models.ZOO[model](in_size=28, seed=seed) if model == "lenet5" and data_dir else \
            models.ZOO[model](seed=seed)
    ds = datasets.load_dataset(dataset, data_dir=data_dir)
    x, y = ds.x_test[:batch], ds.y_test[:batch]
    x = fit_images(net, x)
    return net, x, y, ds


def fit_images(net, x):
    """Resize (N, 1, h, w) images to the first size the network accepts among the input
    size itself, 28 and 32 (integer upsampling, then zero padding)."""
    for side in (x.shape[-1], 28, 32):
        try:
            net.output_shape((1, side, side))
        except ValueError:
            continue
        if side == x.shape[-1]:
            return x
        factor = side // x.shape[-1]
        up = np.repeat(np.repeat(x, factor, axis=2), factor, axis=3)
        pad = (side - up.shape[-1]) // 2
        rest = side - up.shape[-1] - pad
        return np.pad(up, ((0, 0), (0, 0), (pad, rest), (pad, rest)))
    raise ValueError(f"the model accepts none of the image sizes {x.shape[-1]}, 28, 32")

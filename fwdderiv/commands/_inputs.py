"""Models and real input batches for the command line."""
import numpy as np

from .. import models
from ..models.trained import RECIPES, build_model
from ._common import CommandError, load_data


def model_and_images(model, data_dir, batch, trained, seed=0, progress=None,
                     download=False):
    """A zoo model and a batch of real held-out images shaped for it.

    Without ``data_dir`` the images are scikit-learn's 8x8 digits (offline) and the default
    model is ``digits_net``; with it they are MNIST from that directory and the default is
    LeNet-5 (zero-padded 28x28). A trained model comes from :func:`fwdderiv.models.pretrained`
    (trained once, then cached). An untrained model that does not take the images' size
    gets them upsampled by pixel repetition and zero-padded to its input size.
    """
    dataset = "mnist" if data_dir else "digits"
    model = model or ("lenet5" if data_dir else "digits_net")
    if model not in models.ZOO:
        raise CommandError(f"--model {model} is not a zoo model; choose one of "
                           f"{', '.join(sorted(models.ZOO))}")
    if trained and (model, dataset) not in RECIPES:
        fits = sorted(m for m, d in RECIPES if d == dataset)
        raise CommandError(
            f"--model {model} is not trained on the {dataset} images; use --model "
            f"{' or '.join(fits)}, {'drop' if data_dir else 'give'} --data-dir, or add "
            "--untrained")
    ds = load_data(dataset, data_dir, download=download)
    x, y = ds.x_test[:batch], ds.y_test[:batch]
    if trained:
        net = models.pretrained(model, dataset=dataset, data_dir=data_dir, seed=seed,
                                progress=progress)
        return net, x, y, ds
    try:
        net = build_model(model, x.shape[1:], seed=seed)
    except ValueError:
        net = models.ZOO[model](seed=seed)
        x = fit_images(net, x)
    return net, x, y, ds


def fit_images(net, x):
    """Resize (N, 1, h, w) images to the first size the network accepts among 28 and 32
    (integer upsampling by pixel repetition, then zero padding)."""
    for side in (28, 32):
        try:
            net.output_shape((x.shape[1], side, side))
        except ValueError:
            continue
        factor = side // x.shape[-1]
        up = np.repeat(np.repeat(x, factor, axis=2), factor, axis=3)
        pad = (side - up.shape[-1]) // 2
        rest = side - up.shape[-1] - pad
        return np.pad(up, ((0, 0), (0, 0), (pad, rest), (pad, rest)))
    raise ValueError(f"the model takes none of the image sizes {x.shape[-1]}, 28, 32")

"""Models and real input batches for the command line: zoo models with the data set's
images, the data set's images resized for a model file (``--image-size``), and the user's
labels (``--labels``)."""
from pathlib import Path

import numpy as np

from .. import models
from ..models.trained import RECIPES, build_model, default_model
from ._common import CommandError, folder_root, load_data
from ._model import load_inputs
from ._shapes import InputError, shape_text


def model_and_images(model, data_dir, batch, trained, seed=0, progress=None,
                     download=False, dataset=None, image_size=None):
    """A zoo model and a batch of real held-out images shaped for it.

    ``dataset`` is one of ``fwdderiv.datasets.DATASETS``: ``"digits"`` (scikit-learn's 8x8
    digits, offline), ``"mnist"`` or ``"fashion-mnist"`` (IDX files), ``"cifar10"``
    (binary files) or ``"folder"`` (photos in ``data_dir``, decoded at ``image_size``),
    read from ``data_dir`` or the default data folder; None means mnist when ``data_dir``
    is given, else digits. The default model is the data set's
    (:func:`fwdderiv.models.trained.default_model`: digits_net, LeNet-5 on 28x28,
    ResNet-20, photo_cnn). A trained model comes from :func:`fwdderiv.models.pretrained`
    (trained once, then cached). An untrained model that does not take the images' size
    gets them upsampled by pixel repetition and zero-padded to its input size. ``batch``
    None takes every held-out image.

    Returns
    -------
    (net, x, y, dataset)
    """
    dataset = dataset or ("mnist" if data_dir else "digits")
    model = model or default_model(dataset)
    if model not in models.ZOO:
        raise CommandError(f"--model {model} is not a zoo model; choose one of "
                           f"{', '.join(sorted(models.ZOO))}")
    if trained and (model, dataset) not in RECIPES:
        fits = sorted(m for m, d in RECIPES if d == dataset)
        others = sorted({d for m, d in RECIPES if m == model})
        raise CommandError(
            f"--model {model} is not trained on the {dataset} images; use --model "
            f"{' or '.join(fits)}"
            + (f", --dataset {' or '.join(others)}" if others else "") + ", or add --untrained")
    if dataset == "folder":
        data_dir, download = folder_root(data_dir, download), False
    ds = load_data(dataset, data_dir, download=download, image_size=image_size)
    x, y = ds.x_test[:batch], ds.y_test[:batch]
    if trained:
        net = models.pretrained(model, dataset=dataset, data_dir=data_dir, seed=seed,
                                progress=progress, image_size=image_size)
        return net, x, y, ds
    try:
        net = build_model(model, x.shape[1:], seed=seed, n_classes=ds.n_classes)
    except ValueError:
        net = models.ZOO[model](seed=seed)
        x = fit_images(net, x)
    return net, x, y, ds


def fit_images(net, x):
    """Resize (N, 1, h, w) images to the first size the network accepts among 28 and 32
    (:func:`resize_images`)."""
    for side in (28, 32):
        try:
            net.output_shape((x.shape[1], side, side))
        except ValueError:
            continue
        return resize_images(x, (side, side))
    raise ValueError(f"the model takes none of the image sizes {x.shape[-1]}, 28, 32")


def resize_images(x, size, option="--image-size"):
    """Images (N, C, h, w) as (N, C, H, W): upsampled by the largest integer factor that
    fits (each pixel repeated), then zero-padded around, centred. MNIST's 28x28 becomes
    LeNet-5's 32x32 by a 2-pixel border, as in LeCun et al. (1998); the 8x8 digits become
    32x32 by repeating each pixel 4x4. The pixels keep their values: nothing is
    interpolated."""
    H, W = size
    h, w = x.shape[-2:]
    factor = min(H // h, W // w)
    if factor < 1:
        raise CommandError(f"{option} {H},{W} is smaller than the images ({h}x{w}); give a "
                           f"size of at least {h},{w} (images are only enlarged)")
    up = np.repeat(np.repeat(x, factor, axis=-2), factor, axis=-1)
    top, left = (H - up.shape[-2]) // 2, (W - up.shape[-1]) // 2
    pad = [(0, 0)] * (x.ndim - 2) + [(top, H - up.shape[-2] - top),
                                     (left, W - up.shape[-1] - left)]
    return np.pad(up, pad)


def load_labels(path, n, n_classes, option="--labels"):
    """Integer class labels from an ``.npy`` of shape (n,), each in [0, n_classes)."""
    y = load_inputs(path, option)
    if y.ndim != 1 or len(y) != n:
        raise InputError(f"{option} {path}: expected one label per input, shape ({n},), got "
                         f"{shape_text(y.shape)}")
    if y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all():
        y = y.astype(np.int64)
    if y.dtype.kind not in "ui":
        raise InputError(f"{option} {path}: expected integer class labels, got {y.dtype}; "
                         "save them with numpy.save(path, y.astype(numpy.int64))")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise InputError(f"{option} {path}: expected labels in [0, {n_classes}) (the model "
                         f"has {n_classes} outputs), got values from {y.min()} to {y.max()}")
    return y.astype(np.int64)


def labels_for(net, x, labels_path):
    """(labels, note): the ``--labels`` file's, or the model's predictions when none is
    given (the note says so)."""
    probs = net(x)
    if probs.ndim != 2:
        raise CommandError(f"the model's output has shape {shape_text(probs.shape[1:])} per "
                           "input; this command needs a classifier with one output per class")
    if labels_path:
        return load_labels(labels_path, len(x), probs.shape[1]), None
    return probs.argmax(axis=1).astype(np.int64), (
        "labels: the model's predictions (no --labels given), so every input counts as "
        "correctly classified")


def data_description(path, x):
    return f"{Path(path).name} ({len(x)} inputs of shape {shape_text(x.shape[1:])})"


def picture(img):
    """One image (C, H, W) as matplotlib draws it: (H, W) for one channel, (H, W, 3) for
    three (clipped to [0, 1]), else the mean over the channels."""
    if img.shape[0] == 3:
        return np.clip(np.moveaxis(img, 0, -1), 0, 1)
    return img[0] if img.shape[0] == 1 else img.mean(axis=0)

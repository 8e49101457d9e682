"""Trained models on demand: train with the project's recipe once, then load from a cache.

>>> import fwdderiv as fd
>>> net = fd.models.pretrained("digits_net", "digits")   # doctest: +SKIP

The first call trains (a few seconds for the digits, 15-30 s for LeNet-5 on MNIST) and
writes ``<cache>/models/<name>-<dataset>-seed<seed>-r<RECIPE_VERSION>.npz``; later calls
load that file. The cache directory is ``$FWDDERIV_CACHE_DIR``, else ``~/.cache/fwdderiv``.
"""
import json
import os
import sys
import warnings
from pathlib import Path

#: Bump when :data:`RECIPE` or :data:`RECIPES` change, so stale cached models retrain.
RECIPE_VERSION = 1

#: The training recipe shared by every model and data set: SGD with momentum on softmax
#: cross-entropy, minibatches of 32, the learning rate multiplied by 0.6 after each epoch.
RECIPE = {"epochs": 5, "batch_size": 32, "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0,
          "optimizer": "sgd", "lr_decay": 0.6}

#: Per (model, data set) departures from :data:`RECIPE`. The 1,497 digits need more
#: passes than the 9,000 MNIST images for the same number of steps.
RECIPES = {
    ("lenet5", "mnist"): {},
    ("lenet_mnist", "mnist"): {"lr": 0.02},
    ("mnist_convnet", "mnist"): {"lr": 0.02},
    ("mlp", "mnist"): {},
    ("digits_net", "digits"): {"epochs": 15, "lr_decay": 0.85},
    ("mlp", "digits"): {"epochs": 15, "lr_decay": 0.85},
}

#: Threads for training (see :func:`fwdderiv.training.loop.limited_threads`): batches of 32
#: are too small for threads to pay, and spinning worker threads on busy cores slowed
#: training 10-40x in our measurements. Fixed, so the trained weights are reproducible.
TRAIN_THREADS = 1

#: Per-example image shape of each data set (checked against a cached model).
INPUT_SHAPES = {"mnist": (1, 28, 28), "digits": (1, 8, 8)}


def recipe(name, dataset):
    """The hyper-parameters :func:`pretrained` uses for ``(name, dataset)``: a dict with
    epochs, batch_size, lr, momentum, weight_decay, optimizer and lr_decay."""
    key = (name, dataset)
    if key not in RECIPES:
        known = ", ".join(f"({m!r}, {d!r})" for m, d in RECIPES)
        raise ValueError(f"pretrained: no recipe for model {name!r} on data set {dataset!r}; "
                         f"known pairs: {known}")
    return {**RECIPE, **RECIPES[key]}


def build_model(name, in_shape, seed=0):
    """A fresh zoo model ``name`` sized for images of shape ``in_shape`` (C, H, W).

    ``lenet5`` on 28x28 images is ``lenet5(in_size=28)`` (zero padding to 32); ``mlp``
    takes ``in_shape``. Raises a ValueError naming the model and the data shape when the
    model cannot take such images.
    """
    from fwdderiv.models import zoo

    if name not in zoo.ZOO:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(zoo.ZOO)}")
    in_shape = tuple(int(s) for s in in_shape)
    try:
        if name == "lenet5":
            net = zoo.lenet5(seed=seed, in_size=in_shape[-1])
        elif name == "mlp":
            net = zoo.mlp(in_shape=in_shape, seed=seed)
        else:
            net = zoo.ZOO[name](seed=seed)
        net.output_shape(in_shape)
    except ValueError as err:
        fits = [m for m in sorted(zoo.ZOO) if _fits(m, in_shape)]
        raise ValueError(
            f"model {name!r} does not take images of shape {in_shape} ({err}); models "
            f"that fit: {', '.join(fits)}") from None
    return net


def _fits(name, in_shape):
    from fwdderiv.models import zoo

    try:
        if name == "lenet5":
            zoo.lenet5(in_size=in_shape[-1]).output_shape(in_shape)
        elif name != "mlp":
            zoo.ZOO[name]().output_shape(in_shape)
    except ValueError:
        return False
    return True


def models_cache_dir(cache_dir=None):
    """Directory of cached trained models: ``cache_dir``, else ``$FWDDERIV_CACHE_DIR``,
    else ``~/.cache/fwdderiv``; models go in its ``models`` subfolder."""
    if cache_dir is None:
        env = os.environ.get("FWDDERIV_CACHE_DIR")
        cache_dir = Path(env) if env else Path.home() / ".cache" / "fwdderiv"
    return Path(cache_dir).expanduser() / "models"


def cache_path(name, dataset, seed=0, cache_dir=None):
    """Path of the cached ``.npz`` for ``(name, dataset, seed)`` under the current recipe."""
    return models_cache_dir(cache_dir) / f"{name}-{dataset}-seed{int(seed)}-r{RECIPE_VERSION}.npz"


def _load_cached(path, dataset):
    """The cached network, or None (with a warning) if the file is unreadable or wrong."""
    from fwdderiv.io import load

    try:
        net = load(path)
        out = tuple(net.output_shape(INPUT_SHAPES[dataset]))
        if out != (10,):
            raise ValueError(f"its output shape is {out}, expected (10,)")
        return net
    except Exception as err:  # any damage means: train again, never crash
        warnings.warn(f"pretrained: the cached model {path} is unusable ({err}); "
                      "training it again", RuntimeWarning, stacklevel=3)
        return None


def pretrained(name="lenet5", dataset="mnist", data_dir=None, seed=0, progress=None,
               cache_dir=None):
    """A model of the zoo trained on ``dataset`` with the project's recipe, cached.

    On first use the model is built with ``seed``, trained with :func:`recipe` by
    :func:`fwdderiv.training.fit` (shuffling seeded with ``seed``) and saved with its
    final Softmax; a JSON file beside it records the recipe, the data and the held-out
    accuracy. Later calls load the file. A corrupt or unreadable cache file is replaced
    by training again, with a RuntimeWarning.

    Parameters
    ----------
    name : {"lenet5", "lenet_mnist", "mnist_convnet", "mlp", "digits_net"}
        For ``"mnist"``, ``"lenet5"`` is ``fd.models.lenet5(in_size=28)``.
    dataset : {"mnist", "digits"}
        ``"digits"`` (scikit-learn, offline) goes with ``"digits_net"`` or ``"mlp"``.
    data_dir : str or Path, optional
        MNIST directory (see :func:`fwdderiv.datasets.load_dataset`); only read when
        training.
    seed : int, default 0
        Initial weights and shuffling; part of the cache key.
    progress : bool or None
        Progress bar while training; None shows it only on a terminal.
    cache_dir : str or Path, optional
        Overrides ``$FWDDERIV_CACHE_DIR``.

    Returns
    -------
    Sequential
        The trained network, ending in Softmax (``net[:-1]`` gives the logits).
    """
    from fwdderiv.datasets import load_dataset
    from fwdderiv.training import evaluate, fit, save_checkpoint
    from fwdderiv.training.progress import progress_enabled

    if not isinstance(name, str) or not isinstance(dataset, str):
        raise TypeError(f"pretrained expected name and dataset as strings, got {name!r} and "
                        f"{dataset!r}; e.g. pretrained('lenet5', 'mnist')")
    name, dataset = name.lower(), dataset.lower()
    hyper = recipe(name, dataset)
    path = cache_path(name, dataset, seed, cache_dir)
    if path.exists():
        net = _load_cached(path, dataset)
        if net is not None:
            return net
    ds = load_dataset(dataset, data_dir=data_dir)
    net = build_model(name, ds.input_shape, seed=seed)
    show = progress_enabled(progress)
    if show:
        print(f"pretrained: training {name} on {dataset} (first use; cached at {path})",
              file=sys.stderr)
    history = fit(net, ds.x_train, ds.y_train, seed=seed, progress=show,
                  num_threads=TRAIN_THREADS, **hyper)
    accuracy = evaluate(net, ds.x_test, ds.y_test)
    if show:
        print(f"pretrained: held-out accuracy {accuracy:.4f}", file=sys.stderr)
    save_checkpoint(net, path)
    info = {"model": name, "dataset": dataset, "seed": int(seed),
            "recipe_version": RECIPE_VERSION, "recipe": hyper, "data": ds.description,
            "test_accuracy": accuracy, "train_loss": history.loss,
            "seconds_per_epoch": history.seconds}
    path.with_suffix(".json").write_text(json.dumps(info, indent=1))
    return net


def pretrained_info(name="lenet5", dataset="mnist", seed=0, cache_dir=None):
    """The JSON record written beside a cached model (recipe, data, held-out accuracy),
    or None if that model has not been trained yet."""
    path = cache_path(name, dataset, seed, cache_dir).with_suffix(".json")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None

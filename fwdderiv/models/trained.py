"""Trained models on demand: train with the project's recipe once, then load from a cache.

>>> import fwdderiv as fd
>>> net = fd.models.pretrained("digits_net", "digits")   # doctest: +SKIP

The first call trains (a few seconds for the digits, 15-30 s for LeNet-5 on MNIST) and
writes ``<cache>/models/<name>-<dataset>-seed<seed>-r<RECIPE_VERSION>.npz``; later calls
load that file. The cache directory is ``$FWDDERIV_CACHE_DIR``, else ``~/.cache/fwdderiv``.
"""
import hashlib
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
#: passes than the 9,000 MNIST images for the same number of steps. Fashion-MNIST has
#: MNIST's shapes and sizes and keeps its recipes. ResNet-20 on CIFAR-10 takes He et
#: al.'s (2016) SGD settings (batch 128, lr 0.1, momentum 0.9, weight decay 1e-4) over
#: a shorter schedule (the NumPy trainer takes about 26 ms per image on two cores, some
#: 22 minutes an epoch); the photo CNN takes the Keras tutorial's (Adam, lr 0.001, batch
#: 32, 10 epochs; about 4 ms per 64x64 image).
RECIPES = {
    ("lenet5", "mnist"): {},
    ("lenet_mnist", "mnist"): {"lr": 0.02},
    ("mnist_convnet", "mnist"): {"lr": 0.02},
    ("mlp", "mnist"): {},
    ("digits_net", "digits"): {"epochs": 15, "lr_decay": 0.85},
    ("mlp", "digits"): {"epochs": 15, "lr_decay": 0.85},
    ("lenet5", "fashion-mnist"): {},
    ("lenet_mnist", "fashion-mnist"): {"lr": 0.02},
    ("mnist_convnet", "fashion-mnist"): {"lr": 0.02},
    ("mlp", "fashion-mnist"): {},
    ("resnet20", "cifar10"): {"epochs": 10, "batch_size": 128, "lr": 0.1,
                              "weight_decay": 1e-4, "lr_decay": 0.75},
    ("photo_cnn", "folder"): {"epochs": 10, "optimizer": "adam", "lr": 0.001,
                              "momentum": 0.0, "lr_decay": 1.0},
}

#: The model a command uses on each data set when none is named.
DEFAULT_MODELS = {"digits": "digits_net", "mnist": "lenet5", "fashion-mnist": "lenet5",
                  "cifar10": "resnet20", "folder": "photo_cnn"}

#: Threads for training (see :func:`fwdderiv.training.loop.limited_threads`): batches of 32
#: are too small for threads to pay, and spinning worker threads on busy cores slowed
#: training 10-40x in our measurements. Fixed, so the trained weights are reproducible.
TRAIN_THREADS = 1

#: Per-example image shape of each data set (checked against a cached model); an image
#: folder's depends on the size its photos are decoded at.
INPUT_SHAPES = {"mnist": (1, 28, 28), "digits": (1, 8, 8), "fashion-mnist": (1, 28, 28),
                "cifar10": (3, 32, 32)}

#: Models whose class count follows the data (the others have 10 outputs).
SIZED_MODELS = ("mlp", "photo_cnn", "resnet20")


def default_model(dataset):
    """The zoo model used on ``dataset`` when none is named (:data:`DEFAULT_MODELS`)."""
    return DEFAULT_MODELS.get(dataset, "digits_net")


def recipe(name, dataset):
    """The hyper-parameters :func:`pretrained` uses for ``(name, dataset)``: a dict with
    epochs, batch_size, lr, momentum, weight_decay, optimizer and lr_decay."""
    key = (name, dataset)
    if key not in RECIPES:
        known = ", ".join(f"({m!r}, {d!r})" for m, d in RECIPES)
        raise ValueError(f"pretrained: no recipe for model {name!r} on data set {dataset!r}; "
                         f"known pairs: {known}")
    return {**RECIPE, **RECIPES[key]}


def build_model(name, in_shape, seed=0, n_classes=10):
    """A fresh zoo model ``name`` sized for images of shape ``in_shape`` (C, H, W).

    ``lenet5`` on 28x28 images is ``lenet5(in_size=28)`` (zero padding to 32); ``mlp``
    and ``photo_cnn`` take ``in_shape``; ``mlp``, ``photo_cnn`` and ``resnet20`` take
    ``n_classes``, the other models have 10 outputs. Raises a ValueError naming the model
    and the data shape when the model cannot take such images or classes.
    """
    from fwdderiv.models import zoo

    if name not in zoo.ZOO:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(zoo.ZOO)}")
    in_shape = tuple(int(s) for s in in_shape)
    if n_classes != 10 and name not in SIZED_MODELS:
        raise ValueError(f"model {name!r} has 10 outputs but the data set has {n_classes} "
                         f"classes; models that take a class count: {', '.join(SIZED_MODELS)}")
    try:
        net = _make(zoo, name, in_shape, seed, n_classes)
        net.output_shape(in_shape)
    except ValueError as err:
        fits = [m for m in sorted(zoo.ZOO) if _fits(m, in_shape)]
        raise ValueError(
            f"model {name!r} does not take images of shape {in_shape} ({err}); models "
            f"that fit: {', '.join(fits)}") from None
    return net


def _make(zoo, name, in_shape, seed=0, n_classes=10):
    if name == "lenet5":
        return zoo.lenet5(seed=seed, in_size=in_shape[-1])
    if name in ("mlp", "photo_cnn"):
        return zoo.ZOO[name](in_shape=in_shape, n_classes=n_classes, seed=seed)
    if name == "resnet20":
        return zoo.resnet20(n_classes=n_classes, seed=seed)
    return zoo.ZOO[name](seed=seed)


def _fits(name, in_shape):
    from fwdderiv.models import zoo

    try:
        _make(zoo, name, in_shape).output_shape(in_shape)
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


def data_key(dataset, data_dir=None, image_size=None):
    """The part of a cache file name that tells image folders apart: empty for the data
    sets of fixed content; for ``"folder"``, ``-`` and 12 hexadecimal characters of the
    SHA-256 of the folder's resolved path and the decoded image size (another folder, or
    another size, is another model)."""
    if dataset != "folder":
        return ""
    from fwdderiv.datasets.folder import DEFAULT_IMAGE_SIZE, FLOWERS_FOLDER
    from fwdderiv.datasets.mnist import default_data_dir

    root = Path(data_dir).expanduser() if data_dir else default_data_dir() / FLOWERS_FOLDER
    h, w = tuple(image_size or DEFAULT_IMAGE_SIZE)
    text = f"{root.resolve()}|{int(h)}x{int(w)}"
    return "-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def cache_path(name, dataset, seed=0, cache_dir=None, data_dir=None, image_size=None):
    """Path of the cached ``.npz`` for ``(name, dataset, seed)`` under the current recipe
    (for an image folder, also keyed by :func:`data_key`)."""
    key = data_key(dataset, data_dir, image_size)
    return (models_cache_dir(cache_dir)
            / f"{name}-{dataset}{key}-seed{int(seed)}-r{RECIPE_VERSION}.npz")


def _input_shape(dataset, image_size=None):
    if dataset == "folder":
        from fwdderiv.datasets.folder import DEFAULT_IMAGE_SIZE
        return (3, *tuple(image_size or DEFAULT_IMAGE_SIZE))
    return INPUT_SHAPES[dataset]


def _load_cached(path, in_shape, n_classes):
    """The cached network, or None (with a warning) if the file is unreadable or wrong;
    ``n_classes`` None accepts any number of outputs."""
    from fwdderiv.io import load

    try:
        net = load(path)
        out = tuple(net.output_shape(in_shape))
        if len(out) != 1 or (n_classes is not None and out != (n_classes,)):
            raise ValueError(f"its output shape is {out}, expected "
                             f"({'K' if n_classes is None else n_classes},)")
        return net
    except Exception as err:  # any damage means: train again, never crash
        warnings.warn(f"pretrained: the cached model {path} is unusable ({err}); "
                      "training it again", RuntimeWarning, stacklevel=3)
        return None


def pretrained(name="lenet5", dataset="mnist", data_dir=None, seed=0, progress=None,
               cache_dir=None, image_size=None):
    """A model of the zoo trained on ``dataset`` with the project's recipe, cached.

    On first use the model is built with ``seed``, trained with :func:`recipe` by
    :func:`fwdderiv.training.fit` (shuffling seeded with ``seed``) and saved with its
    final Softmax; a JSON file beside it records the recipe, the data, the class names
    and the held-out accuracy. Later calls load the file. A corrupt or unreadable cache
    file is replaced by training again, with a RuntimeWarning.

    Parameters
    ----------
    name : str
        A zoo model with a recipe for ``dataset`` (:data:`RECIPES`). For 28x28 images,
        ``"lenet5"`` is ``fd.models.lenet5(in_size=28)``.
    dataset : {"mnist", "digits", "fashion-mnist", "cifar10", "folder"}
        ``"digits"`` (scikit-learn, offline) goes with ``"digits_net"`` or ``"mlp"``,
        ``"cifar10"`` with ``"resnet20"``, ``"folder"`` with ``"photo_cnn"``.
    data_dir : str or Path, optional
        The data set's folder (see :func:`fwdderiv.datasets.load_dataset`); only read
        when training, except for an image folder, whose path is part of the cache key.
    seed : int, default 0
        Initial weights and shuffling; part of the cache key.
    progress : bool or None
        Progress bar while training; None shows it only on a terminal.
    cache_dir : str or Path, optional
        Overrides ``$FWDDERIV_CACHE_DIR``.
    image_size : (int, int), optional
        ``"folder"`` only: the size the photos are decoded at (default (64, 64)); part of
        the cache key.

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
    path = cache_path(name, dataset, seed, cache_dir, data_dir, image_size)
    if path.exists():
        net = _load_cached(path, _input_shape(dataset, image_size),
                           None if dataset == "folder" else 10)
        if net is not None:
            return net
    options = {"image_size": image_size} if dataset == "folder" else {}
    ds = load_dataset(dataset, data_dir=data_dir, **options)
    net = build_model(name, ds.input_shape, seed=seed, n_classes=ds.n_classes)
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
            "classes": list(ds.classes), "test_accuracy": accuracy,
            "train_loss": history.loss, "seconds_per_epoch": history.seconds}
    path.with_suffix(".json").write_text(json.dumps(info, indent=1))
    return net


def pretrained_info(name="lenet5", dataset="mnist", seed=0, cache_dir=None, data_dir=None,
                    image_size=None):
    """The JSON record written beside a cached model (recipe, data, held-out accuracy),
    or None if that model has not been trained yet."""
    path = cache_path(name, dataset, seed, cache_dir, data_dir, image_size).with_suffix(".json")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None

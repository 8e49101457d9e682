"""Model and data options shared by the commands that run a classifier on images
(``attribute``, ``attack``, ``reproduce``, and ``check`` for its inputs): the model, the
data set or the user's own ``--inputs``/``--labels``, and ``--image-size``: the size an
image folder's photos are decoded at, or the size a model file takes when the data set's
images have another."""
from pathlib import Path
from typing import NamedTuple

from ..models.trained import default_model
from ._common import (CommandError, add_dataset_option, image_size, load_data, positive_int)
from ._inputs import data_description, labels_for, model_and_images, resize_images
from ._model import MODEL_HELP, check_inputs, load_inputs, load_model, model_kind

#: The advice when a data set's images do not fit a model file (``{size}``: its sides).
RESIZE = ("pass --image-size {size} to resize the data set's images (pixel repetition, "
          "then zero padding), or give your own --inputs X.npy")

#: Help of ``--data-dir`` on every command that reads a data set.
DATA_DIR_HELP = ("the data set's folder: MNIST's or Fashion-MNIST's IDX files, CIFAR-10's "
                 ".bin files (or the folder holding cifar-10-batches-bin/), or for --dataset "
                 "folder the photos, one sub-folder per class (default: the data set's "
                 "folder in $FWDDERIV_DATA_DIR or ~/.cache/fwdderiv/data)")

#: Help of ``--image-size``.
IMAGE_SIZE_HELP = ("with --dataset folder: the size the photos are decoded at (default "
                   "64,64); otherwise: resize the data set's images for a model file that "
                   "takes another size: each pixel repeated by the largest integer factor "
                   "that fits, then a zero border (MNIST 28x28 -> 32,32 adds a 2-pixel "
                   "border)")


def add_image_size_option(p):
    """``--image-size H,W`` (unless the parser has it)."""
    if "--image-size" not in p._option_string_actions:
        p.add_argument("--image-size", type=image_size, default=None, metavar="H,W",
                       help=IMAGE_SIZE_HELP)
    return p


def add_input_options(p):
    """``--inputs``, ``--labels`` and ``--image-size`` (and ``--dataset`` beside
    ``--data-dir``)."""
    p.add_argument("--inputs", default=None, metavar="X.NPY",
                   help="your own images, an .npy of shape (N, *S), float32 or float64, "
                        "instead of the data set's held-out images")
    p.add_argument("--labels", default=None, metavar="Y.NPY",
                   help="the classes of --inputs, integers of shape (N,) (default: the "
                        "model's predictions, said in the output)")
    add_image_size_option(p)
    return add_dataset_option(p)


def add_dataset_inputs(p, batch_default, batch_help):
    """``--data-dir``, ``--batch`` and ``--image-size`` (and ``--dataset``) for a command
    whose inputs are an ``--inputs`` file or, without one, the data set's held-out images
    (``check``); read them with :func:`dataset_images`."""
    p.add_argument("--data-dir", default=None, metavar="DIR", help=DATA_DIR_HELP)
    p.add_argument("--batch", type=positive_int, default=batch_default,
                   help=f"{batch_help} (default: {batch_default})")
    add_image_size_option(p)
    return add_dataset_option(p)


def add_model_arguments(p, batch_default, batch_help):
    p.add_argument("--model", default=None,
                   help=f"the model: {MODEL_HELP} (default: digits_net on the digits, lenet5 "
                        "on MNIST and Fashion-MNIST, resnet20 on CIFAR-10, photo_cnn on an "
                        "image folder); a zoo model is trained once with the project's recipe, "
                        "then cached")
    p.add_argument("--weights", default=None, metavar="NPZ",
                   help="a network saved with fwdderiv.save / fwdderiv train --output (the "
                        "same as --model NPZ)")
    p.add_argument("--data-dir", default=None, metavar="DIR", help=DATA_DIR_HELP)
    p.add_argument("--untrained", action="store_true",
                   help="use freshly initialised zoo weights (fast; for trying things out)")
    p.add_argument("--batch", type=positive_int, default=None,
                   help=f"{batch_help}; with --inputs, the first N of them (default: all)")
    p.add_argument("--seed", type=int, default=0, help="model seed (default: 0)")
    p.add_argument("--output", default=None, metavar="DIR",
                   help="directory for the figures and JSON (default: the command's name)")
    add_input_options(p)
    p.set_defaults(batch_default=batch_default)


class Classifier(NamedTuple):
    """A model and the images it runs on, as the command line chose them."""
    net: object
    x: object            # (N, *S) images
    y: object            # (N,) labels
    model: str           # the model as named on the command line
    data: str            # the data set's name, or "inputs"
    where: str           # where the images came from, for reports
    note: str            # None, or a line to print (labels taken from the predictions)
    classes: tuple = None  # the name of each class, or None (the user's own inputs)


def class_name(classes, k):
    """Class ``k`` as reports name it: ``"3"``, or ``"3 (Dress)"`` when the class names
    are words."""
    k = int(k)
    if classes is None or k >= len(classes) or classes[k] == str(k):
        return str(k)
    return f"{k} ({classes[k]})"


def model_and_data(args, n):
    """(net, x, y, description, classes): the model and ``n`` images with labels and the
    class names (None for the user's own inputs), for ``attribute`` and ``attack``
    (prints the note of :func:`load_classifier`)."""
    n = n if n is not None else (None if args.inputs else args.batch_default)
    c = load_classifier(args, n)
    if c.note:
        print(c.note)
    return c.net, c.x, c.y, f"{c.model} on {c.where}", c.classes


def _model_option(args):
    weights = getattr(args, "weights", None)
    if weights and args.model:
        raise CommandError("give either --model or --weights, not both (--model also takes "
                           "an .npz)")
    if weights and not Path(weights).exists():
        raise FileNotFoundError(f"--weights {weights} does not exist; save a network "
                                "with fwdderiv.save(net, path) or fwdderiv train --output")
    return ("--weights", weights) if weights else ("--model", args.model)


def dataset_images(args, n=None):
    """(x, y, dataset, where): the first ``n`` held-out images of ``--dataset`` (all for
    None) with their labels, an image folder decoded at ``--image-size``, another data
    set's images resized to it (:func:`resize_images`), and a description for reports."""
    folder = args.dataset == "folder"
    ds = load_data(args.dataset, args.data_dir, getattr(args, "download", False),
                   image_size=args.image_size if folder else None)
    x, y = ds.x_test[:n], ds.y_test[:n]
    where = ds.description
    if args.image_size and not folder:
        x = resize_images(x, args.image_size)
        where += f", resized to {args.image_size[0]}x{args.image_size[1]}"
    return x, y, ds, where


def inputs_or_dataset(args, n=None):
    """The ``--inputs`` array, or without it the first ``n`` held-out images of
    ``--dataset`` (:func:`dataset_images`)."""
    if args.inputs:
        if args.image_size:
            raise CommandError("--image-size applies to the data set's images; resize your "
                               "own --inputs before saving them")
        return load_inputs(args.inputs)
    return dataset_images(args, n)[0]


def load_classifier(args, n=None):
    """The model of ``--model``/``--weights`` (a zoo name or a model file) and ``n``
    images (None: all) with labels: the user's ``--inputs``/``--labels`` or the held-out
    images of ``--dataset``, resized by ``--image-size``; every input checked against the
    model before it runs.

    Returns
    -------
    Classifier
    """
    if args.labels and not args.inputs:
        raise CommandError("--labels gives the classes of --inputs; add --inputs X.npy, or "
                           "drop --labels to use the data set's labels")
    if args.image_size and args.inputs:
        raise CommandError("--image-size resizes the data set's images; resize your own "
                           "--inputs before saving them")
    option, spec = _model_option(args)
    x = load_inputs(args.inputs)[:n] if args.inputs else None
    if spec is None or model_kind(spec, option) == "zoo":
        return _zoo_classifier(args, spec, x, n)
    if x is not None:
        loaded = load_model(spec, x, option=option)
        y, note = labels_for(loaded.net, x, args.labels)
        return Classifier(loaded.net, x, y, _file_name(spec), "inputs",
                          data_description(args.inputs, x), note)
    x, y, ds, where = dataset_images(args, n)
    loaded = load_model(spec, x, option=option, inputs_option=f"--dataset {ds.name}",
                        resize=RESIZE)
    return Classifier(loaded.net, x, y, _file_name(spec), ds.name, where, None, ds.classes)


def zoo_image_size(args):
    """``--image-size`` for a zoo model: the decoding size of ``--dataset folder``; None
    otherwise, and a usage error when given with another data set."""
    if args.dataset == "folder":
        return args.image_size
    if args.image_size:
        raise CommandError("--image-size applies to model files and to --dataset folder; a "
                           "zoo model takes the data set's images as they are")
    return None


def _zoo_classifier(args, spec, x, n):
    size = zoo_image_size(args)
    untrained = getattr(args, "untrained", False)
    net, images, labels, ds = model_and_images(
        spec, args.data_dir, 1 if x is not None else n, trained=not untrained,
        seed=args.seed, progress=None, download=getattr(args, "download", False),
        dataset=args.dataset, image_size=size)
    name = f"{spec or default_model(ds.name)} ({'untrained' if untrained else 'trained'})"
    if x is None:
        return Classifier(net, images, labels, name, ds.name, ds.description, None,
                          ds.classes)
    check_inputs(net, x, name)
    y, note = labels_for(net, x, args.labels)
    return Classifier(net, x, y, name, "inputs", data_description(args.inputs, x), note,
                      ds.classes)


def _file_name(spec):
    """The model file's name without its folder (``lenet.py`` for ``dir/lenet.py:make``)."""
    return Path(spec.rpartition(":")[0] if model_kind(spec) == "torch" else spec).name


def short_name(description):
    """The model and data set part of a description, for figure titles (no paths)."""
    return description.split(";")[0].split(":")[0]

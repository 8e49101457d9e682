"""Model and data options shared by the commands that run a classifier on images
(``attribute``, ``attack``, ``reproduce``): the model, the data set or the user's own
``--inputs``/``--labels``, and ``--image-size`` for a model file that takes another size
than the data set's images."""
from pathlib import Path
from typing import NamedTuple

from ._common import CommandError, add_dataset_option, image_size, load_data, positive_int
from ._inputs import data_description, labels_for, model_and_images, resize_images
from ._model import MODEL_HELP, check_inputs, load_inputs, load_model, model_kind

#: The advice when a data set's images do not fit a model file (``{size}``: its sides).
RESIZE = ("pass --image-size {size} to resize the data set's images (pixel repetition, "
          "then zero padding), or give your own --inputs X.npy")


def add_input_options(p):
    """``--inputs``, ``--labels`` and ``--image-size`` (and ``--dataset`` beside
    ``--data-dir``)."""
    p.add_argument("--inputs", default=None, metavar="X.NPY",
                   help="your own images, an .npy of shape (N, *S), float32 or float64, "
                        "instead of the data set's held-out images")
    p.add_argument("--labels", default=None, metavar="Y.NPY",
                   help="the classes of --inputs, integers of shape (N,) (default: the "
                        "model's predictions, said in the output)")
    p.add_argument("--image-size", type=image_size, default=None, metavar="H,W",
                   help="resize the data set's images for a model file that takes another "
                        "size: each pixel repeated by the largest integer factor that fits, "
                        "then a zero border (MNIST 28x28 -> 32,32 adds a 2-pixel border)")
    return add_dataset_option(p)


def add_model_arguments(p, batch_default, batch_help):
    p.add_argument("--model", default=None,
                   help=f"the model: {MODEL_HELP} (default: digits_net on the digits, lenet5 "
                        "on MNIST); a zoo model is trained once with the project's recipe, "
                        "then cached")
    p.add_argument("--weights", default=None, metavar="NPZ",
                   help="a network saved with fwdderiv.save / fwdderiv train --output (the "
                        "same as --model NPZ)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="the folder with MNIST's IDX files for --dataset mnist (default: "
                        "$FWDDERIV_DATA_DIR/mnist or ~/.cache/fwdderiv/data/mnist)")
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
    data: str            # "digits", "mnist" or "inputs"
    where: str           # where the images came from, for reports
    note: str            # None, or a line to print (labels taken from the predictions)


def model_and_data(args, n):
    """(net, x, y, description): the model and ``n`` images with labels, for ``attribute``
    and ``attack`` (prints the note of :func:`load_classifier`)."""
    n = n if n is not None else (None if args.inputs else args.batch_default)
    c = load_classifier(args, n)
    if c.note:
        print(c.note)
    return c.net, c.x, c.y, f"{c.model} on {c.where}"


def _model_option(args):
    weights = getattr(args, "weights", None)
    if weights and args.model:
        raise CommandError("give either --model or --weights, not both (--model also takes "
                           "an .npz)")
    if weights and not Path(weights).exists():
        raise FileNotFoundError(f"--weights {weights} does not exist; save a network "
                                "with fwdderiv.save(net, path) or fwdderiv train --output")
    return ("--weights", weights) if weights else ("--model", args.model)


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
    ds = load_data(args.dataset, args.data_dir, getattr(args, "download", False))
    x, y = ds.x_test[:n], ds.y_test[:n]
    if args.image_size:
        x = resize_images(x, args.image_size)
    loaded = load_model(spec, x, option=option, inputs_option=f"--dataset {ds.name}",
                        resize=RESIZE)
    where = ds.description + (f", resized to {args.image_size[0]}x{args.image_size[1]}"
                              if args.image_size else "")
    return Classifier(loaded.net, x, y, _file_name(spec), ds.name, where, None)


def _zoo_classifier(args, spec, x, n):
    if args.image_size:
        raise CommandError("--image-size applies to model files; a zoo model takes the data "
                           "set's images as they are")
    untrained = getattr(args, "untrained", False)
    net, images, labels, ds = model_and_images(
        spec, args.data_dir, 1 if x is not None else n, trained=not untrained,
        seed=args.seed, progress=None, download=getattr(args, "download", False),
        dataset=args.dataset)
    name = f"{spec or ('lenet5' if ds.name == 'mnist' else 'digits_net')} " \
           f"({'untrained' if untrained else 'trained'})"
    if x is None:
        return Classifier(net, images, labels, name, ds.name, ds.description, None)
    check_inputs(net, x, name)
    y, note = labels_for(net, x, args.labels)
    return Classifier(net, x, y, name, "inputs", data_description(args.inputs, x), note)


def _file_name(spec):
    """The model file's name without its folder (``lenet.py`` for ``dir/lenet.py:make``)."""
    return Path(spec.rpartition(":")[0] if model_kind(spec) == "torch" else spec).name


def short_name(description):
    """The model and data set part of a description, for figure titles (no paths)."""
    return description.split(";")[0].split(":")[0]

"""Model and data options shared by ``fwdderiv attribute`` and ``fwdderiv attack``."""
from pathlib import Path

from ._common import CommandError, load_data
from ._inputs import model_and_images
from ._model import MODEL_HELP, check_inputs, load_model, model_kind


def add_model_arguments(p, batch_default, batch_help):
    p.add_argument("--model", default=None,
                   help=f"the model: {MODEL_HELP} (default: digits_net on the digits, lenet5 "
                        "with --data-dir); a zoo model is trained once with the project's "
                        "recipe, then cached")
    p.add_argument("--weights", default=None, metavar="NPZ",
                   help="a network saved with fwdderiv.save / fwdderiv train --output (the "
                        "same as --model NPZ)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="directory with MNIST IDX files; default: scikit-learn's 8x8 digits "
                        "(offline)")
    p.add_argument("--untrained", action="store_true",
                   help="use freshly initialised zoo weights (fast; for trying things out)")
    p.add_argument("--batch", type=int, default=batch_default, help=batch_help)
    p.add_argument("--seed", type=int, default=0, help="model seed (default: 0)")
    p.add_argument("--output", default=None, metavar="DIR",
                   help="directory for the figures and JSON (default: the command's name)")


def model_and_data(args, n):
    """(net, x, y, description): the model and ``n`` held-out images with labels.

    ``--model`` is a zoo name or a model file (.npz, .onnx, file.py:factory: see
    :mod:`fwdderiv.commands._model`); ``--weights`` is the older spelling for an .npz.
    """
    if n < 1:
        raise ValueError(f"--batch must be at least 1, got {n}")
    if args.weights and args.model:
        raise CommandError("give either --model or --weights, not both (--model also takes "
                           "an .npz)")
    option, spec = ("--weights", args.weights) if args.weights else ("--model", args.model)
    if args.weights and not Path(args.weights).exists():
        raise FileNotFoundError(f"--weights {args.weights} does not exist; save a network "
                                "with fwdderiv.save(net, path) or fwdderiv train --output")
    if spec is not None and model_kind(spec, option) != "zoo":
        dataset = "mnist" if args.data_dir else "digits"
        ds = load_data(dataset, args.data_dir, getattr(args, "download", False))
        x, y = ds.x_test[:n], ds.y_test[:n]
        loaded = load_model(spec, x, option=option)
        try:
            check_inputs(loaded.net, x, spec, option=option, expected=loaded.input_shape)
        except CommandError as err:
            raise CommandError(f"{err} ({dataset} images); pass --data-dir for MNIST or a "
                               "model for these images") from None
        file = Path(spec.rpartition(":")[0] if loaded.kind == "torch" else spec)
        return loaded.net, x, y, f"{file.name} on {ds.description}"
    net, x, y, ds = model_and_images(args.model, args.data_dir, n, trained=not args.untrained,
                                     seed=args.seed, progress=None)
    name = args.model or ("lenet5" if args.data_dir else "digits_net")
    return net, x, y, f"{name} ({'untrained' if args.untrained else 'trained'}) on " \
                      f"{ds.description}"


def short_name(description):
    """The model and data set part of a description, for figure titles (no paths)."""
    return description.split(";")[0].split(":")[0]

"""Model and data options shared by ``fwdderiv attribute`` and ``fwdderiv attack``."""
from pathlib import Path

from .. import datasets
from ..io import load
from ._inputs import model_and_images


def add_model_arguments(p, batch_default, batch_help):
    p.add_argument("--model", default=None,
                   help="zoo model: lenet5, lenet_mnist, mnist_convnet, mlp, digits_net "
                        "(default: digits_net on the digits, lenet5 with --data-dir); "
                        "trained once with the project's recipe, then cached")
    p.add_argument("--weights", default=None, metavar="NPZ",
                   help="a network saved with fwdderiv.save / fwdderiv train --output, "
                        "instead of a zoo model")
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
    """(net, x, y, description): the model and ``n`` held-out images with labels."""
    if n < 1:
        raise ValueError(f"--batch must be at least 1, got {n}")
    if args.weights:
        path = Path(args.weights)
        if not path.exists():
            raise FileNotFoundError(f"--weights {path} does not exist; save a network with "
                                    "fwdderiv.save(net, path) or fwdderiv train --output")
        net = load(path)
        dataset = "mnist" if args.data_dir else "digits"
        from ._common import load_data
        ds = load_data(dataset, args.data_dir, getattr(args, "download", False))
        x, y = ds.x_test[:n], ds.y_test[:n]
        try:
            net.output_shape(x.shape[1:])
        except ValueError as err:
            raise ValueError(f"the network in {path} does not take {dataset} images of shape "
                             f"{x.shape[1:]} ({err}); pass --data-dir for MNIST or the "
                             "matching weights") from None
        return net, x, y, f"{path.name} on {ds.description}"
    net, x, y, ds = model_and_images(args.model, args.data_dir, n, trained=not args.untrained,
                                     seed=args.seed, progress=None)
    name = args.model or ("lenet5" if args.data_dir else "digits_net")
    return net, x, y, f"{name} ({'untrained' if args.untrained else 'trained'}) on " \
                      f"{ds.description}"


def short_name(description):
    """The model and data set part of a description, for figure titles (no paths)."""
    return description.split(";")[0].split(":")[0]

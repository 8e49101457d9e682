"""``fwdderiv train``: train a model of the zoo on one of the data sets (the scikit-learn
digits, MNIST, Fashion-MNIST, CIFAR-10, or a folder of photos)."""
import argparse
import os
import sys
from pathlib import Path
import textwrap

import numpy as np

from fwdderiv.models.trained import RECIPE, RECIPES, TRAIN_THREADS, default_model, recipe

from ._classifier_args import DATA_DIR_HELP, add_image_size_option
from ._common import (DATASETS, CommandError, add_download_option, add_progress_options,
                      load_data, nonnegative_float, nonnegative_int, positive_int)

MODELS = ("lenet5", "lenet_mnist", "mnist_convnet", "mlp", "digits_net", "resnet20",
          "photo_cnn")

DESCRIPTION = """\
Train a model of the fwdderiv zoo with NumPy (softmax cross-entropy, SGD with momentum
or Adam, seeded shuffling) and report its accuracy on the held-out images."""

DATA_HELP = """\
Data sets: 'digits' is scikit-learn's 8x8 handwritten digits (offline, 1,497 train /
300 held out); 'mnist' and 'fashion-mnist' read IDX files from --data-dir (with only the
t10k files, the first 9,000 images train and the last 1,000 are held out); 'cifar10'
reads CIFAR-10's binary files (data_batch_1.bin ... test_batch.bin); 'folder' decodes
the photos of --data-dir, one sub-folder per class, at --image-size (default 64,64) and
holds out a fifth of each class (--download fetches TensorFlow's flower photos).
Models for 8x8 digits: digits_net, mlp. Models for 28x28 MNIST and Fashion-MNIST: lenet5
(zero-padded to 32x32), lenet_mnist, mnist_convnet, mlp. CIFAR-10: resnet20. Photo
folders: photo_cnn (its class count comes from the folder), mlp."""

EPILOG = """\
examples:
  fwdderiv train --model digits_net --dataset digits --output digits_net.npz
  fwdderiv train --model lenet5 --dataset mnist --data-dir ~/data/mnist --epochs 5 \\
      --output lenet5.npz
  fwdderiv train --dataset fashion-mnist --data-dir ~/data/fashion-mnist
  fwdderiv train --dataset folder --download --image-size 64,64     # flower photos
Load the result in Python with fwdderiv.load("lenet5.npz")."""


def _description():
    digits = RECIPES[("digits_net", "digits")]
    recipe_text = (
        "Hyper-parameters left out default to the project's recipe for the model and data "
        "set (the one fd.models.pretrained uses): "
        + ", ".join(f"{k} {v}" for k, v in RECIPE.items()) + " (digits: "
        + ", ".join(f"{k} {v}" for k, v in digits.items()) + ").")
    return "\n\n".join([DESCRIPTION, textwrap.fill(recipe_text, width=88), DATA_HELP])


def add_parser(subparsers):
    """Register ``train`` on an ``argparse`` subparsers object; return its parser."""
    p = subparsers.add_parser(
        "train", help="train a zoo model on a data set (digits, MNIST, Fashion-MNIST, "
                      "CIFAR-10, a photo folder)",
        description=_description(), epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=MODELS, default=None,
                   help="architecture (default: digits_net for digits, lenet5 for mnist "
                        "and fashion-mnist, resnet20 for cifar10, photo_cnn for folder)")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="training data (default: digits, which need no download; mnist "
                        "when --data-dir or --download is given)")
    p.add_argument("--data-dir", default=None, metavar="DIR", help=DATA_DIR_HELP)
    add_image_size_option(p)
    p.add_argument("--epochs", type=positive_int, default=None, metavar="N",
                   help="passes over the data")
    p.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                   help="examples per step")
    p.add_argument("--lr", type=nonnegative_float, default=None,
                   help="learning rate of the first epoch")
    p.add_argument("--lr-decay", type=nonnegative_float, default=None, metavar="F",
                   help="learning rate multiplied by F after each epoch")
    p.add_argument("--momentum", type=nonnegative_float, default=None,
                   help="SGD momentum (Adam: beta1)")
    p.add_argument("--weight-decay", type=nonnegative_float, default=None, metavar="L2",
                   help="L2 coefficient added to the gradients")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default=None,
                   help="update rule (default: sgd)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the initial weights and of the shuffling (default: 0)")
    p.add_argument("--threads", type=nonnegative_int, default=TRAIN_THREADS, metavar="N",
                   help=f"threads for Numba kernels and BLAS while training (default "
                        f"{TRAIN_THREADS}: minibatches are too small for more to pay; 0 keeps "
                        "the libraries' defaults)")
    p.add_argument("--output", "-o", default=None, metavar="PATH",
                   help="write the trained network here (.npz, read with fwdderiv.load; "
                        "default: MODEL-DATASET-seedSEED.npz in the current folder)")
    add_download_option(add_progress_options(p))
    p.set_defaults(run=run)
    return p


def _error(message):
    print(f"fwdderiv train: error: {message}", file=sys.stderr)
    return 2


def run(args):
    """Run ``fwdderiv train`` with parsed ``args``; return the exit status."""
    from fwdderiv.models.trained import build_model
    from fwdderiv.training import evaluate, fit, save_checkpoint

    model = args.model or default_model(args.dataset)
    if args.image_size and args.dataset != "folder":
        return _error(f"--image-size is the size --dataset folder decodes its photos at; "
                      f"the {args.dataset} images have a fixed size: drop --image-size")
    if args.output is None:
        args.output = default_output(model, args.dataset, args.seed)
        if Path(args.output).exists():
            return _error(f"{args.output} exists (the default --output); pass --output PATH "
                          "to write elsewhere, or name this file to replace it")
    if not str(args.output).endswith(".npz"):
        return _error(f"--output must be a .npz path, got {args.output!r}; "
                      f"use {str(args.output) + '.npz'!r}")
    if args.output is not None and os.path.isdir(args.output):
        return _error(f"--output {args.output!r} is a directory; give a file path such as "
                      f"{os.path.join(args.output, model + '.npz')!r}")
    try:
        hyper = recipe(model, args.dataset)
    except ValueError:
        hyper = dict(RECIPE)
    for key in ("epochs", "batch_size", "lr", "lr_decay", "momentum", "weight_decay",
                "optimizer"):
        value = getattr(args, key)
        if value is not None:
            hyper[key] = value
    try:
        ds = load_data(args.dataset, args.data_dir, download=args.download,
                       image_size=args.image_size)
    except CommandError as err:
        return _error(str(err))
    except (OSError, ValueError) as err:
        return _error(f"cannot load data set {args.dataset!r}: {' '.join(str(err).split())}")
    try:
        net = build_model(model, ds.input_shape, seed=args.seed, n_classes=ds.n_classes)
    except ValueError as err:
        return _error(f"{err}. Data set {args.dataset!r} has images of shape "
                      f"{ds.input_shape}; pick a --model that takes them")
    progress = args.progress                 # None: a bar only on a terminal
    print(f"training {model} on {ds.description}", file=sys.stderr)
    print("recipe: " + ", ".join(f"{k}={v}" for k, v in hyper.items()), file=sys.stderr)
    try:
        history = fit(net, ds.x_train, ds.y_train, seed=args.seed, progress=progress,
                      num_threads=args.threads or None, **hyper)
    except (ValueError, TypeError, FloatingPointError) as err:
        return _error(str(err))
    accuracy = evaluate(net, ds.x_test, ds.y_test)
    seconds = sum(history.seconds)
    print(f"{model} on {args.dataset}: held-out accuracy {accuracy:.4f} "
          f"({len(ds.y_test)} images), final training loss {history.loss[-1]:.4f}, "
          f"{seconds:.1f} s training")
    print("held-out accuracy per class: " + per_class(net, ds))
    path = save_checkpoint(net, args.output)
    print(f"saved to {path} (load it with fwdderiv.load)")
    return 0


def per_class(net, ds):
    """``"name 0.91 (98), ..."``: each class's held-out accuracy and image count."""
    from fwdderiv.training import predict

    pred = predict(net, ds.x_test).argmax(axis=1)
    parts = []
    for k, name in enumerate(ds.classes):
        mask = ds.y_test == k
        if mask.any():
            parts.append(f"{name} {np.mean(pred[mask] == k):.2f} ({int(mask.sum())})")
    return ", ".join(parts)


def default_output(model, dataset, seed):
    """``--output`` when none is given: ``MODEL-DATASET-seedSEED.npz`` in the current
    folder."""
    return f"{model}-{dataset}-seed{seed}.npz"

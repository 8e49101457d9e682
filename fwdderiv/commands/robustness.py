"""``fwdderiv robustness``: the noise-robustness experiment of Jacobian regularisation.

The worked example popularised with Hoffman, Roberts and Yaida (2019): a small convnet
(conv 5x5x20, BatchNorm, ReLU; conv 3x3x20 padding 1, BatchNorm, ReLU; conv 3x3x20
padding 1, BatchNorm, ReLU; fully connected 10; softmax) trained with SGD (momentum 0.9,
lr 0.01, batch 32) with and without the penalty lambda/2 ||dZ/dx||_F^2, same initial
weights and data order, then evaluated as a growing share of pixels is replaced by
random gray values.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ._common import (CommandParser, add_dataset_option, add_download_option,
                      add_progress_options, load_data, nonnegative_float, nonnegative_int,
                      positive_int)
from ._output import output_dir

#: Shares of pixels replaced by noise.
NOISE = [round(0.05 * i, 2) for i in range(11)]
#: The seed of the noise (the same noisy images for both networks).
NOISE_SEED = 1234
#: The share of noisy pixels of the example image.
EXAMPLE_NOISE = 0.15
#: Clean accuracy (a fraction) the regularised network may lose against the reference
#: before the run warns that lambda is too large for the epochs.
CLEAN_DROP = 0.05

EPILOG = """\
examples:
  fwdderiv robustness --epochs 1 --output robustness-digits
  fwdderiv robustness --dataset mnist --data-dir ~/data/mnist --epochs 15 --lambda 1.0 \
      --output out/"""


def add_parser(subparsers):
    p = subparsers.add_parser(
        "robustness", help="train with and without Jacobian regularisation; accuracy under noise",
        description=__doc__.split("\n\n", 1)[1], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="the folder with MNIST's IDX files for --dataset mnist (9,000 train "
                        "/ 1,000 held out with the t10k files only; default: "
                        "$FWDDERIV_DATA_DIR/mnist or ~/.cache/fwdderiv/data/mnist)")
    p.add_argument("--epochs", type=positive_int, default=15, metavar="N",
                   help="training passes over the data, for both networks (default: 15, the "
                        "worked example's; 1 is a quick look, not a converged model)")
    p.add_argument("--lambda", dest="lam", type=nonnegative_float, default=1.0, metavar="L",
                   help="weight of the penalty (default 1.0, the worked example's). The "
                        "penalty is on the raw pixels in [0, 1]; on inputs standardised "
                        "by a pixel std s the same L weighs ||J||^2 1/s^2 times less "
                        "(MNIST: s = 0.3081, so L = 0.1 here is about their L = 1)")
    p.add_argument("--method", default="output", choices=("output", "input", "exact"),
                   help="estimator of ||J||_F^2 in training (default: output, n_proj 1)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the initial weights (the same for both networks) and of "
                        "the shuffling (default: 0)")
    p.add_argument("--threads", type=nonnegative_int, default=1, metavar="N",
                   help="threads for Numba kernels and BLAS while training (default: 1; 0 "
                        "keeps the libraries' defaults)")
    p.add_argument("--train-size", type=positive_int, default=None, metavar="N",
                   help="train on the first N training images only (default: all)")
    p.add_argument("--output", "-o", default="robustness", metavar="DIR",
                   help="folder for robustness.json, robustness.md, robustness.png, "
                        "example.png and the two networks (default: robustness)")
    add_download_option(add_dataset_option(add_progress_options(p)))
    p.set_defaults(run=run)
    return p


def worked_example_net(in_shape, seed=0):
    """The worked example's convnet for single-channel images of shape ``in_shape``."""
    import fwdderiv as fd

    _, H, W = in_shape
    return fd.Sequential([
        fd.Conv2d(in_shape[0], 20, 5, seed=seed), fd.BatchNorm2d(20), fd.ReLU(),
        fd.Conv2d(20, 20, 3, padding=1, seed=seed + 1), fd.BatchNorm2d(20), fd.ReLU(),
        fd.Conv2d(20, 20, 3, padding=1, seed=seed + 2), fd.BatchNorm2d(20), fd.ReLU(),
        fd.Flatten(), fd.Linear(20 * (H - 4) * (W - 4), 10, seed=seed + 3), fd.Softmax()])


def add_noise(x, share, rng):
    """Replace each pixel with probability ``share`` by a uniform gray value in [0, 1]."""
    mask = rng.random(x.shape) < share
    return np.where(mask, rng.random(x.shape).astype(x.dtype), x).astype(x.dtype)


def run(args):
    import fwdderiv as fd
    from fwdderiv.regularization import jacobian_norm
    from fwdderiv.training import evaluate, fit
    from fwdderiv.training.loop import limited_threads

    ds = load_data(args.dataset, args.data_dir, download=args.download)
    x_train, y_train = ds.x_train[:args.train_size], ds.y_train[:args.train_size]
    print(f"robustness: {ds.description}; {len(x_train)} training images, {args.epochs} "
          f"epochs, Jacobian penalty lambda {args.lam:g} (--method {args.method}), seed "
          f"{args.seed}; {len(ds.x_test)} held-out images", flush=True)
    out = Path(args.output)
    nets, seconds = {}, {}
    for name, lam in (("reference", 0.0), ("jacobian_reg", args.lam)):
        net = worked_example_net(ds.x_train.shape[1:], seed=args.seed)
        start = time.perf_counter()
        fit(net, x_train, y_train, epochs=args.epochs, batch_size=32, lr=0.01,
            momentum=0.9, seed=args.seed, progress=args.progress,
            num_threads=args.threads or None, jacobian_reg=lam, jacobian_method=args.method)
        seconds[name] = time.perf_counter() - start
        nets[name] = net
    acc = {name: [] for name in nets}
    for share in NOISE:
        xn = add_noise(ds.x_test, share, np.random.default_rng([NOISE_SEED, int(share * 100)]))
        for name, net in nets.items():
            acc[name].append(evaluate(net, xn, ds.y_test))
    warning = _clean_drop_warning(acc, args)
    with limited_threads(args.threads or None):
        norms = {name: float(jacobian_norm(net, ds.x_test).mean()) for name, net in nets.items()}
    x0 = ds.x_test[:1]
    x0n = add_noise(x0, EXAMPLE_NOISE, np.random.default_rng(NOISE_SEED))
    example = {"label": int(ds.y_test[0]), "noise": EXAMPLE_NOISE,
               **{f"{name}_{kind}": int(net(x).argmax()) for name, net in nets.items()
                  for kind, x in (("clean", x0), ("noisy", x0n))}}
    result = {"noise": NOISE, "accuracy": acc, "jacobian_norm": norms, "example": example,
              "dataset": ds.name, "train_size": len(x_train), "test_size": len(ds.x_test),
              "epochs": args.epochs, "lambda": args.lam, "method": args.method,
              "seed": args.seed, "noise_seed": NOISE_SEED, "train_seconds": seconds,
              "warning": warning}
    rows = ["| noise | reference | jacobian_reg |", "|---|---|---|"] + [
        f"| {s:.2f} | {a:.4f} | {b:.4f} |"
        for s, a, b in zip(NOISE, acc["reference"], acc["jacobian_reg"])]
    table = "\n".join(rows) + (
        f"\n\nMean exact ||dZ/dx||_F^2 on the held-out images: reference "
        f"{norms['reference']:.4g}, jacobian_reg {norms['jacobian_reg']:.4g}.\n")
    with output_dir(out, last="robustness.md") as stage:
        for name, net in nets.items():
            fd.save(net, str(stage / f"{name}.npz"))
        (stage / "robustness.json").write_text(json.dumps(result, indent=2))
        _plot(stage, acc, x0, x0n, example)
        (stage / "robustness.md").write_text(table)
    print(table)
    print(f"wrote {out / 'robustness.json'}, robustness.md, robustness.png, example.png")
    return 0


def _clean_drop_warning(acc, args):
    """A warning (printed to stderr, and returned) when the regularised network's clean
    accuracy is more than :data:`CLEAN_DROP` below the reference's; else None."""
    ref, reg = acc["reference"][0], acc["jacobian_reg"][0]
    if ref - reg <= CLEAN_DROP:
        return None
    warning = (f"the regularised network's clean accuracy {reg:.1%} is {100 * (ref - reg):.0f} "
               f"points below the reference's {ref:.1%}: lambda {args.lam:g} is too strong "
               f"for {args.epochs} epoch(s); raise --epochs or lower --lambda before reading "
               "the noise curves")
    print(f"fwdderiv robustness: warning: {warning}", file=sys.stderr, flush=True)
    return warning


def _plot(out, acc, x0, x0n, example):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(NOISE, acc["reference"], "o-", label="reference")
    ax.plot(NOISE, acc["jacobian_reg"], "s-", label="Jacobian regularisation")
    ax.set_xlabel("share of pixels replaced by noise")
    ax.set_ylabel("held-out accuracy")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "robustness.png", dpi=100)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(6, 3))
    for ax, img, kind in zip(axes, (x0, x0n), ("clean", "noisy")):
        ax.imshow(img[0, 0], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{kind}: ref {example['reference_' + kind]}, "
                     f"reg {example['jacobian_reg_' + kind]}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "example.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(run(add_parser(argparse.ArgumentParser().add_subparsers(
        parser_class=CommandParser)).parse_args()))

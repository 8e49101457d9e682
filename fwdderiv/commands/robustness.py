"""``fwdderiv robustness``: the noise-robustness experiment of Jacobian regularisation.

The worked example popularised with Hoffman, Roberts and Yaida (2019): a small convnet
whose input layer subtracts the mean training image (conv 5x5x20, BatchNorm, ReLU; conv
3x3x20 padding 1, BatchNorm, ReLU; conv 3x3x20 padding 1, BatchNorm, ReLU; fully
connected, one output per class; softmax) trained with SGD (momentum 0.9, lr 0.01, batch
32) without the penalty (the reference) and with lambda/2 times the unit-vector
projection estimate of ||dZ/dx||_F^2 for each lambda given, from the same initial weights
and in the same data order, then evaluated as a growing share of pixels (0 to 0.5 in
steps of 0.05) is replaced by random gray values.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ._common import (CommandError, CommandParser, add_dataset_option, add_download_option,
                      add_progress_options, image_size, load_data, nonnegative_float,
                      nonnegative_int, positive_int)
from ._classifier_args import DATA_DIR_HELP
from ._cluster import add_cluster_options, sharded, where_run
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
    p.add_argument("--data-dir", default=None, metavar="DIR", help=DATA_DIR_HELP)
    p.add_argument("--image-size", type=image_size, default=None, metavar="H,W",
                   help="with --dataset folder: the size the photos are decoded at "
                        "(default 64,64)")
    add_cluster_options(p)           # one network (one lambda) per task
    p.add_argument("--epochs", type=positive_int, default=15, metavar="N",
                   help="training passes over the data, for every network (default: 15, the "
                        "worked example's; 1 is a quick look, not a converged model)")
    p.add_argument("--lambda", dest="lams", type=_lambdas, default=[1.0], metavar="L1,L2,...",
                   help="penalty weights, comma-separated: the reference is trained once and "
                        "each lambda once, and every curve goes into one figure (default 1.0, "
                        "the worked example's; e.g. 0.03,0.1,0.3,1)")
    p.add_argument("--input-mean", choices=("image", "none"), default="image",
                   help="the network's input layer: image (default) subtracts the mean "
                        "training image, as the worked example's input layer does; none "
                        "feeds the raw pixels in [0, 1]")
    p.add_argument("--method", default="output", choices=("output", "input", "exact"),
                   help="estimator of ||J||_F^2 in training (default: output, n_proj 1)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the initial weights (the same for every network) and of "
                        "the shuffling (default: 0)")
    p.add_argument("--threads", type=nonnegative_int, default=1, metavar="N",
                   help="threads for Numba kernels and BLAS while training (default: 1; 0 "
                        "keeps the libraries' defaults)")
    p.add_argument("--train-size", type=positive_int, default=None, metavar="N",
                   help="train on the first N training images only (default: all)")
    p.add_argument("--output", "-o", default="robustness", metavar="DIR",
                   help="folder for robustness.json, robustness.md, robustness.png, "
                        "example.png and every network as NAME.npz (default: robustness)")
    add_download_option(add_dataset_option(add_progress_options(p)))
    p.set_defaults(run=run)
    return p


def _lambdas(text):
    """``--lambda``: one or more comma-separated weights >= 0, without repeats."""
    values = []
    for part in str(text).split(","):
        values.append(nonnegative_float(part.strip()))
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"repeats a value in {text!r}; give each lambda once")
    return values


def network_name(lam):
    """The name of the network trained with penalty weight ``lam`` (0: the reference)."""
    return "reference" if lam == 0 else f"lambda_{lam:g}"


def worked_example_net(in_shape, seed=0, mean=None, n_classes=10):
    """The worked example's convnet for images of shape ``in_shape`` (C, H, W); with
    ``mean`` (the mean training image) its input layer subtracts it, as the example's
    image input layer does."""
    import fwdderiv as fd

    _, H, W = in_shape
    first = [] if mean is None else [fd.Normalize(mean=mean)]
    return fd.Sequential(first + [
        fd.Conv2d(in_shape[0], 20, 5, seed=seed), fd.BatchNorm2d(20), fd.ReLU(),
        fd.Conv2d(20, 20, 3, padding=1, seed=seed + 1), fd.BatchNorm2d(20), fd.ReLU(),
        fd.Conv2d(20, 20, 3, padding=1, seed=seed + 2), fd.BatchNorm2d(20), fd.ReLU(),
        fd.Flatten(), fd.Linear(20 * (H - 4) * (W - 4), n_classes, seed=seed + 3), fd.Softmax()])


def add_noise(x, share, rng):
    """Replace each pixel with probability ``share`` by a uniform gray value in [0, 1]."""
    mask = rng.random(x.shape) < share
    return np.where(mask, rng.random(x.shape).astype(x.dtype), x).astype(x.dtype)


def run(args):
    if args.image_size is not None and args.dataset != "folder":
        raise CommandError(f"--image-size is the decoding size of --dataset folder; the "
                           f"{args.dataset} images keep their size: drop --image-size")
    ds = load_data(args.dataset, args.data_dir, download=args.download,
                   image_size=args.image_size)
    x_train, y_train = ds.x_train[:args.train_size], ds.y_train[:args.train_size]
    lams = [0.0] + [lam for lam in args.lams if lam != 0]
    print(f"robustness: {ds.description}; {len(x_train)} training images, {args.epochs} "
          f"epochs, Jacobian penalty lambda {', '.join(f'{v:g}' for v in lams[1:]) or '-'} "
          f"(--method {args.method}), input layer {args.input_mean}, seed {args.seed}; "
          f"{len(ds.x_test)} held-out images", flush=True)
    mean = x_train.mean(axis=0) if args.input_mean == "image" else None
    if sharded(args):
        print(f"robustness: training the {len(lams)} networks on {where_run(args)}",
              flush=True)
        nets, seconds = train_on_cluster(args, x_train, y_train, lams, mean)
    else:
        nets, seconds = {}, {}
        for lam in lams:
            nets[network_name(lam)], seconds[network_name(lam)] = train_one(
                args, x_train, y_train, lam, mean)
    result = evaluate_networks(args, ds, nets)
    result.update({"dataset": ds.name, "data_description": ds.description,
                   "train_size": len(x_train), "test_size": len(ds.x_test),
                   "epochs": args.epochs, "lambda": {network_name(v): v for v in lams},
                   "method": args.method, "input_mean": args.input_mean, "seed": args.seed,
                   "noise_seed": NOISE_SEED, "train_seconds": seconds})
    result["warning"] = _clean_drop_warning(result["accuracy"], args)
    table = _table(result)
    out = Path(args.output)
    with output_dir(out, last="robustness.md") as stage:
        import fwdderiv as fd
        for name, net in nets.items():
            fd.save(net, str(stage / f"{name}.npz"))
        (stage / "robustness.json").write_text(json.dumps(result, indent=2))
        _plot(stage, result)
        (stage / "robustness.md").write_text(table)
    print(table)
    print(f"wrote {out / 'robustness.json'}, robustness.md, robustness.png, example.png")
    return 0


def train_one(args, x_train, y_train, lam, mean):
    """The worked example's network trained with penalty weight ``lam``; returns it and
    the training seconds. Every network starts from the same weights (``args.seed``)."""
    from fwdderiv.training import fit

    net = worked_example_net(x_train.shape[1:], seed=args.seed, mean=mean,
                             n_classes=int(y_train.max()) + 1)
    start = time.perf_counter()
    fit(net, x_train, y_train, epochs=args.epochs, batch_size=32, lr=0.01, momentum=0.9,
        seed=args.seed, progress=args.progress, num_threads=args.threads or None,
        jacobian_reg=lam, jacobian_method=args.method)
    return net, time.perf_counter() - start


#: The options :func:`train_one` reads, sent to the workers with each lambda.
TRAIN_SETTINGS = ("epochs", "seed", "threads", "method")


def train_on_cluster(args, x_train, y_train, lams, mean):
    """Every network trained as one task of :func:`fwdderiv.distributed.run_sharded`
    (one lambda per task; the images go to each worker once). Returns the networks and
    their training seconds, as the loop in this process would."""
    from fwdderiv.distributed import run_sharded

    settings = {k: getattr(args, k) for k in TRAIN_SETTINGS}
    states = run_sharded(_train_task, list(lams), shared=(x_train, y_train, mean),
                         args=(settings,), shard_size=1, workers=args.workers,
                         scheduler=args.scheduler, progress=args.progress,
                         desc="networks", combine=False)
    nets, seconds = {}, {}
    for lam, state in zip(lams, states):
        net = worked_example_net(x_train.shape[1:], seed=args.seed, mean=mean,
                                 n_classes=int(y_train.max()) + 1)
        seconds[network_name(lam)] = float(state.pop("train_seconds"))
        _set_state(net, state)
        nets[network_name(lam)] = net
    return nets, seconds


def _train_task(shared, part, start, settings):
    """One worker task: train the network of ``part[0]`` (a lambda); its parameters and
    buffers by ``"<layer index>.<name>"``, and its training seconds."""
    from types import SimpleNamespace

    x_train, y_train, mean = shared
    net, seconds = train_one(SimpleNamespace(**settings, progress=False), x_train, y_train,
                             float(part[0]), mean)
    state = {f"{i}.{name}": np.asarray(a) for i, layer in enumerate(net)
             for name, a in {**layer.params, **layer.buffers}.items()}
    return {**state, "train_seconds": np.float64(seconds)}


def _set_state(net, state):
    for i, layer in enumerate(net):
        for name in {**layer.params, **layer.buffers}:
            old = getattr(layer, name)
            setattr(layer, name, np.array(state[f"{i}.{name}"], dtype=old.dtype))


def evaluate_networks(args, ds, nets):
    """Held-out accuracy at every noise level (the same noisy images for every network),
    the mean exact ||dZ/dx||_F^2 and the example image's predictions."""
    from fwdderiv.regularization import jacobian_norm
    from fwdderiv.training import evaluate
    from fwdderiv.training.loop import limited_threads

    acc = {name: [] for name in nets}
    for share in NOISE:
        xn = add_noise(ds.x_test, share, np.random.default_rng([NOISE_SEED, int(share * 100)]))
        for name, net in nets.items():
            acc[name].append(evaluate(net, xn, ds.y_test))
    with limited_threads(args.threads or None):
        norms = {name: float(jacobian_norm(net, ds.x_test).mean()) for name, net in nets.items()}
    x0 = ds.x_test[:1]
    x0n = add_noise(x0, EXAMPLE_NOISE, np.random.default_rng(NOISE_SEED))
    example = {"label": int(ds.y_test[0]), "noise": EXAMPLE_NOISE,
               "clean": x0[0, 0].tolist(), "noisy": x0n[0, 0].tolist(),
               **{f"{name}_{kind}": int(net(x).argmax()) for name, net in nets.items()
                  for kind, x in (("clean", x0), ("noisy", x0n))}}
    return {"noise": NOISE, "accuracy": acc, "jacobian_norm": norms, "example": example}


def _table(result):
    names = list(result["accuracy"])
    rows = ["| noise | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    rows += [f"| {s:.2f} | " + " | ".join(f"{result['accuracy'][n][i]:.4f}" for n in names)
             + " |" for i, s in enumerate(NOISE)]
    rows += ["| mean exact ‖dZ/dx‖²_F | "
             + " | ".join(f"{result['jacobian_norm'][n]:.4g}" for n in names) + " |"]
    return "\n".join(rows) + "\n"


def _clean_drop_warning(acc, args):
    """A warning (printed to stderr, and returned) when a regularised network's clean
    accuracy is more than :data:`CLEAN_DROP` below the reference's; else None."""
    ref = acc["reference"][0]
    worse = {name: a[0] for name, a in acc.items()
             if name != "reference" and ref - a[0] > CLEAN_DROP}
    if not worse:
        return None
    parts = ", ".join(f"{name} {reg:.1%} ({100 * (ref - reg):.0f} points below)"
                      for name, reg in worse.items())
    warning = (f"clean accuracy of the reference {ref:.1%}; {parts}: lambda is too strong for "
               f"{args.epochs} epoch(s); raise --epochs or lower --lambda before reading "
               "those noise curves")
    print(f"fwdderiv robustness: warning: {warning}", file=sys.stderr, flush=True)
    return warning


def _plot(out, result):
    """robustness.png: one accuracy curve per network, the mean exact norm in the legend;
    example.png: the example image clean and noisy with every network's predictions."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (name, acc) in enumerate(result["accuracy"].items()):
        norm = result["jacobian_norm"][name]
        ax.plot(NOISE, acc, "os^vD<>"[i % 7] + "-", label=f"{name} (‖J‖²_F {norm:.3g})")
    ax.set_xlabel("share of pixels replaced by noise")
    ax.set_ylabel("held-out accuracy")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "robustness.png", dpi=100)
    plt.close(fig)
    ex = result["example"]
    names = list(result["accuracy"])
    fig, axes = plt.subplots(1, 2, figsize=(6, 3.4))
    for ax, kind in zip(axes, ("clean", "noisy")):
        ax.imshow(np.asarray(ex[kind]), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{kind}\n" + ", ".join(f"{n}: {ex[f'{n}_{kind}']}" for n in names),
                     fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "example.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(run(add_parser(argparse.ArgumentParser().add_subparsers(
        parser_class=CommandParser)).parse_args()))

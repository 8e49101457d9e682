"""Training benchmark: seconds per epoch of fwdderiv's NumPy trainer against PyTorch.

Run from the repository root: ``python -m benchmarks.training --help``.

Both frameworks train the same model from the same initial weights (fwdderiv's, copied
into a ``torch.nn.Sequential`` by :func:`benchmarks.peers.to_torch`), on the same data in
the same shuffled order (``np.random.default_rng(seed).permutation`` per epoch, as
:func:`fwdderiv.training.fit` draws it), with the same batch size, optimiser and learning
rate schedule, in float32. Only the training steps are timed (forward, loss, backward,
update); evaluation is outside the clock. The losses per epoch are printed for both, so a
reader can see the two runs follow the same trajectory.
"""
import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

GOAL_RATIO = 2.0


def _default_mnist_dir():
    env = os.environ.get("FWDDERIV_SHARED")
    shared = Path(env) if env else Path(__file__).resolve().parents[1] / ".." / "shared"
    return shared / "data" / "mnist"


@contextlib.contextmanager
def threads_set(n):
    """Numba, BLAS and PyTorch at ``n`` threads for a block, then as they were (for
    benchmarks called in-process, e.g. by their smoke tests); Numba and BLAS through
    :func:`fwdderiv.training.loop.limited_threads`."""
    from fwdderiv.training.loop import limited_threads

    try:
        import torch
    except ImportError:
        torch = None
    before = torch.get_num_threads() if torch is not None else None
    try:
        with limited_threads(n):
            if torch is not None:
                torch.set_num_threads(n)
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(before)


def set_threads(n):
    """Limit numba, BLAS (via threadpoolctl, if installed) and torch to ``n`` threads."""
    import numba

    numba.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n)
    except ImportError:
        print("threadpoolctl missing: BLAS keeps its default thread count", file=sys.stderr)
    try:
        import torch
        torch.set_num_threads(n)
    except ImportError:
        pass


def run_fwdderiv(net, ds, hyper, seed):
    from fwdderiv.training import evaluate, fit

    hist = fit(net, ds.x_train, ds.y_train, seed=seed, progress=False, **hyper)
    return {"seconds": hist.seconds, "loss": hist.loss,
            "test_accuracy": evaluate(net, ds.x_test, ds.y_test)}


def run_torch(model, ds, hyper, seed):
    import torch

    x, y = torch.from_numpy(ds.x_train), torch.from_numpy(ds.y_train)
    for q in model.parameters():
        q.requires_grad_(True)
    model.train()
    lr, bs = hyper["lr"], hyper["batch_size"]
    if hyper["optimizer"] == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=hyper["momentum"],
                              weight_decay=hyper["weight_decay"])
    else:
        betas = (hyper["momentum"] or 0.9, 0.999)
        opt = torch.optim.Adam(model.parameters(), lr=lr, betas=betas,
                               weight_decay=hyper["weight_decay"])
    rng = np.random.default_rng(seed)
    n = len(y)
    out = {"seconds": [], "loss": []}
    for epoch in range(hyper["epochs"]):
        for group in opt.param_groups:
            group["lr"] = lr * hyper["lr_decay"] ** epoch
        order = torch.from_numpy(rng.permutation(n))
        loss_sum = 0.0
        start = time.perf_counter()
        for lo in range(0, n, bs):
            idx = order[lo:lo + bs]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
        out["seconds"].append(time.perf_counter() - start)
        out["loss"].append(loss_sum / n)
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(ds.x_test)).argmax(1).numpy()
    out["test_accuracy"] = float(np.mean(pred == ds.y_test))
    return out


def warm_up(net, ds):
    """Compile fwdderiv's Numba kernels (cached on disk) on a few examples, untimed."""
    from fwdderiv.training import fit

    fit(net, ds.x_train[:64], ds.y_train[:64], epochs=1, batch_size=32, progress=False)


def main(argv=None):
    from fwdderiv.models.trained import RECIPE, build_model, recipe

    p = argparse.ArgumentParser(
        prog="python -m benchmarks.training",
        description="Seconds per training epoch: fwdderiv against PyTorch, same model, "
                    "initial weights, data order, batch size and optimiser, float32. Goal: "
                    f"fwdderiv within {GOAL_RATIO:g}x PyTorch's time.")
    p.add_argument("--model", default="lenet5",
                   help="zoo model (default lenet5, as lenet5(in_size=28) on MNIST)")
    p.add_argument("--dataset", choices=("mnist", "digits"), default="mnist")
    p.add_argument("--data-dir", default=None,
                   help="MNIST directory (default: the shared t10k files beside the repo)")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs (default 2)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--optimizer", choices=("sgd", "adam"), default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--momentum", type=float, default=None)
    p.add_argument("--threads", type=int, default=None,
                   help="limit numba, BLAS and torch to this many threads (default: each "
                        "library's own default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results here")
    args = p.parse_args(argv)

    import fwdderiv as fd  # noqa: F401  (imported before torch: same order as users)
    from fwdderiv.datasets import load_dataset

    from benchmarks.peers import to_torch

    if args.threads:
        set_threads(args.threads)
    data_dir = args.data_dir or (_default_mnist_dir() if args.dataset == "mnist" else None)
    ds = load_dataset(args.dataset, data_dir=data_dir)
    try:
        hyper = recipe(args.model, args.dataset)
    except ValueError:
        hyper = dict(RECIPE)
    for key in ("batch_size", "optimizer", "lr", "momentum"):
        if getattr(args, key) is not None:
            hyper[key] = getattr(args, key)
    hyper["epochs"] = args.epochs

    net = build_model(args.model, ds.input_shape, seed=args.seed)
    model = to_torch(net[:-1], "float32")   # logits; both train on softmax cross-entropy
    warm_up(build_model(args.model, ds.input_shape, seed=args.seed), ds)
    print(f"{args.model} on {ds.description}", file=sys.stderr)
    print("recipe: " + ", ".join(f"{k}={v}" for k, v in hyper.items()), file=sys.stderr)
    results = {"fwdderiv": run_fwdderiv(net, ds, hyper, args.seed),
               "torch": run_torch(model, ds, hyper, args.seed)}

    import numba
    import torch
    env = {"python": platform.python_version(), "numpy": np.__version__,
           "numba": numba.__version__, "torch": torch.__version__,
           "numba_threads": numba.get_num_threads(), "torch_threads": torch.get_num_threads(),
           "cpus": os.cpu_count()}
    print(f"\n{args.model}, {args.dataset}, {len(ds.y_train)} images/epoch, batch "
          f"{hyper['batch_size']}, {hyper['optimizer']}, float32; threads: numba "
          f"{env['numba_threads']}, torch {env['torch_threads']}")
    print(f"{'framework':<10} {'s/epoch (median)':>17} {'per epoch':>22} {'loss per epoch':>30} "
          f"{'held-out acc':>13}")
    for name, r in results.items():
        per = " ".join(f"{s:.2f}" for s in r["seconds"])
        loss = " ".join(f"{v:.4f}" for v in r["loss"])
        print(f"{name:<10} {np.median(r['seconds']):>17.3f} {per:>22} {loss:>30} "
              f"{r['test_accuracy']:>13.4f}")
    medians = {name: float(np.median(r["seconds"])) for name, r in results.items()}
    ratio = medians["fwdderiv"] / medians["torch"]
    verdict = "within" if ratio <= GOAL_RATIO else "outside"
    print(f"ratio fwdderiv / torch: {ratio:.2f}x ({verdict} the {GOAL_RATIO:g}x goal)")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"model": args.model, "dataset": args.dataset, "recipe": hyper, "env": env,
             "results": results, "ratio": ratio}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

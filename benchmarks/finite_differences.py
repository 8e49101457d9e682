"""Why finite differences are slow and imprecise: the input gradient of the cross-entropy
of the trained MNIST LeNet-5 by reverse mode and by difference quotients, pixel by pixel.

Run from the repository root::

    python -m benchmarks.finite_differences            # MNIST from ../shared if present
    python -m benchmarks.finite_differences --data digits --images 4

Prints (and with ``--json`` keeps) the time of each method on the same images (median of
``--repeats`` alternating rounds) and the error of every difference quotient against the
exact float64 gradient: the relative error ``||g_fd - g||_2 / ||g||_2`` over the batch and
the share of pixels off by more than 1% of ``max |g|``. On MNIST as it is, most of the
error comes from kinks: the constant background makes max-pool windows tie (and ReLU
inputs sit at a bias), so a difference quotient straddles a kink where ``loss_gradient``
takes PyTorch's one-sided derivative. The sweep of step sizes (float64 and float32)
therefore runs on the same images plus uniform noise in [0, ``--jitter``), which breaks
the ties and leaves the truncation and rounding errors that the step controls.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.attribution import load_case
from benchmarks.jsma import _shared_mnist

STEPS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10, 1e-12)


def main(argv=None):
    from fwdderiv import loss_gradient
    from fwdderiv.numeric import loss_gradient_fd

    p = argparse.ArgumentParser(prog="python -m benchmarks.finite_differences",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=("mnist", "digits"), default=None)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--images", type=int, default=16, help="images of the timing table")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sweep-images", type=int, default=4, help="images in the step sweep")
    p.add_argument("--jitter", type=float, default=1e-3,
                   help="uniform noise added to the sweep's images (default 1e-3)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    data_dir = args.data_dir or _shared_mnist()
    data = args.data or ("mnist" if data_dir else "digits")
    net, images, name = load_case(data, data_dir)
    x = images[:args.images].astype(np.float64)
    y = net(x).argmax(axis=1)
    exact = loss_gradient(net, x, y)

    def err(g):
        """(||g_fd - g||_2 / ||g||_2, share of pixels off by > 1% of max |g|); NaN where
        x + h rounds back to x (a step below the working precision)."""
        e = np.abs(g - exact)
        return (float(np.sqrt((e ** 2).sum() / (exact ** 2).sum())),
                float((~(e <= 0.01 * np.abs(exact).max())).mean()))

    def fmt(e):
        return "x + h = x" if np.isnan(e[0]) else f"{e[0]:.1e} / {100 * e[1]:.1f}%"

    runs = {"reverse (loss_gradient), float64": lambda: loss_gradient(net, x, y),
            "reverse (loss_gradient), float32": lambda: loss_gradient(net, x.astype(np.float32), y),
            "forward differences, float64": lambda: loss_gradient_fd(net, x, y, "forward"),
            "central differences, float64": lambda: loss_gradient_fd(net, x, y, "central"),
            "central differences, float32": lambda: loss_gradient_fd(
                net, x, y, "central", step=2.0 ** -8, dtype=np.float32)}
    times = {k: [] for k in runs}
    results = {k: f() for k, f in runs.items()}       # warm-up
    for _ in range(args.repeats):
        for k, f in runs.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    D = x[0].size
    print(f"{name}: {len(x)} images of {D} pixels, labels = predictions\n")
    print("| method | loss evaluations per image | median s (min-max) | relative L2 error / "
          "pixels off by > 1% |")
    print("|---|---|---|---|")
    evals = {"reverse": "1 forward + 1 backward", "forward": f"{D + 1}",
             "central": f"{2 * D}"}
    rows = {}
    for k in runs:
        med = float(np.median(times[k]))
        rows[k] = {"times": times[k], "median_s": med, "error": err(results[k])}
        print(f"| {k} | {evals[k.split()[0]]} | {med:.3f} ({min(times[k]):.3f}-"
              f"{max(times[k]):.3f}) | {fmt(err(results[k]))} |")
    print(f"\nerror against the step, {args.sweep_images} images + uniform noise in [0, "
          f"{args.jitter:g}) (relative L2 error / pixels off by > 1%):\n")
    print("| relative step h | forward, float64 | central, float64 | central, float32 |")
    print("|---|---|---|---|")
    sweep = []
    rng = np.random.default_rng(0)
    x = x[:args.sweep_images] + rng.uniform(0, args.jitter, x[:args.sweep_images].shape)
    y = y[:args.sweep_images]
    exact = loss_gradient(net, x, y)
    for h in STEPS:
        e = (err(loss_gradient_fd(net, x, y, "forward", step=h)),
             err(loss_gradient_fd(net, x, y, "central", step=h)),
             err(loss_gradient_fd(net, x, y, "central", step=h, dtype=np.float32)))
        sweep.append({"step": h, "forward64": e[0], "central64": e[1], "central32": e[2]})
        print(f"| {h:.0e} | {fmt(e[0])} | {fmt(e[1])} | {fmt(e[2])} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"case": name, "images": len(x), "rows": rows,
                                         "sweep": sweep}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The variance of the Jacobian-norm estimators against the exact norm, LeNet-5 on MNIST.

For each of ``--images`` held-out MNIST digits, ``--draws`` independent estimates of
||dZ/dx||_F^2 (logits Z, 28x28 input) per estimator and n_proj; prints a markdown table of
the mean relative standard deviation std(estimate) / exact, and the mean relative bias
with its standard error.

    python -m benchmarks.jacobian_variance --data-dir ../shared/data/mnist
"""
import argparse
import time

import numpy as np

import fwdderiv as fd
from fwdderiv.regularization import jacobian_norm
from fwdderiv.training.loop import limited_threads


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="../shared/data/mnist")
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--draws", type=int, default=200)
    args = ap.parse_args(argv)
    net = fd.models.pretrained("lenet5", "mnist", data_dir=args.data_dir, progress=False)
    ds = fd.datasets.load_dataset("mnist", data_dir=args.data_dir)
    x = ds.x_test[:args.images].astype(np.float64)
    start = time.perf_counter()
    with limited_threads(1):
        exact = jacobian_norm(net, x)
        print(f"LeNet-5 (pretrained, MNIST), {args.images} held-out images, {args.draws} "
              f"draws each; exact ||J||_F^2: mean {exact.mean():.4g}, range "
              f"{exact.min():.4g}..{exact.max():.4g}\n")
        print("| method | n_proj | rel. std (mean over images) | x sqrt(n_proj) | rel. bias +- s.e. |")
        print("|---|---|---|---|---|")
        for method in ("output", "input"):
            for n_proj in (1, 2, 4, 8):
                est = jacobian_norm(net, np.repeat(x, args.draws, axis=0), method=method,
                                    n_proj=n_proj, seed=n_proj).reshape(args.images, args.draws)
                rel = est / exact[:, None]
                rstd = rel.std(axis=1, ddof=1).mean()
                bias = rel.mean() - 1
                se = rel.mean(axis=1).std(ddof=1) / np.sqrt(args.images) if args.images > 1 \
                    else rel.std(ddof=1) / np.sqrt(rel.size)
                print(f"| {method} | {n_proj} | {rstd:.3f} | {rstd * np.sqrt(n_proj):.3f} | "
                      f"{bias:+.4f} +- {se:.4f} |")
    print(f"\n{time.perf_counter() - start:.1f} s (one Numba thread, shared machine)")


if __name__ == "__main__":
    main()

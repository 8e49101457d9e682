"""``fwdderiv jacobian``: the forward derivative of a model for a batch of real images,
checked against reverse mode and finite differences."""
import time

import numpy as np

from ..core.kinks import kink_census
from ..numeric import jacobian_fd
from ._common import add_download_option, add_progress_options, show_progress
from ._inputs import model_and_images

MODELS = ("lenet5", "lenet_mnist", "mnist_convnet", "mlp", "digits_net")

SHADES = " .:-=+*#%@"


def add_parser(sub):
    p = sub.add_parser(
        "jacobian", help="compute dF/dx of a model for a batch and check it",
        description="Compute the forward derivative dF/dx (the paper's recursion, eq. (6)) of a "
                    "zoo model for a small batch of real images, check it against reverse mode "
                    "and central finite differences, and show which input pixels move each "
                    "class probability most.")
    p.add_argument("--model", default=None, metavar="MODEL",
                   help="zoo model: lenet5, lenet_mnist, mnist_convnet, mlp, digits_net "
                        "(default: digits_net on the digits, lenet5 with --data-dir)")
    p.add_argument("--batch", type=int, default=4, help="number of images (default: 4)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                   help="computation dtype (default: float64, the reference)")
    p.add_argument("--data-dir", default=None,
                   help="directory with MNIST IDX files; default: scikit-learn's 8x8 digits "
                        "(offline)")
    p.add_argument("--untrained", action="store_true",
                   help="use freshly initialised weights instead of the trained, cached model")
    p.add_argument("--fd-examples", type=int, default=1,
                   help="examples checked by finite differences (default: 1; 0 skips)")
    p.add_argument("--top", type=int, default=3, help="pixels listed per class (default: 3)")
    p.add_argument("--trace", action="store_true",
                   help="also print dH_k/dx layer by layer (shape, share of non-zeros)")
    p.add_argument("--seed", type=int, default=0, help="model seed (default: 0)")
    add_download_option(add_progress_options(p))
    p.set_defaults(run=run)
    return p


def _timed(f):
    t = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t


def heatmap(a):
    """ASCII picture of a 2-D array of magnitudes, darkest where largest."""
    a = np.abs(a)
    top = a.max() or 1.0
    idx = np.minimum((a / top * (len(SHADES) - 1)).round().astype(int), len(SHADES) - 1)
    return "\n".join("    " + "".join(SHADES[i] * 2 for i in row) for row in idx)


def run(args):
    if args.batch < 1:
        raise ValueError(f"--batch must be at least 1, got {args.batch}")
    if args.fd_examples < 0:
        raise ValueError(f"--fd-examples must be >= 0 (0 skips the check), got "
                         f"{args.fd_examples}")
    if args.fd_examples > args.batch:
        raise ValueError(f"--fd-examples ({args.fd_examples}) cannot exceed --batch "
                         f"({args.batch}); lower it or raise --batch")
    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    net, x, labels, ds = model_and_images(args.model, args.data_dir, args.batch,
                                          trained=not args.untrained, seed=args.seed,
                                          progress=show_progress(args),
                                          download=args.download)
    x = x.astype(args.dtype)
    print(f"model      {args.model or ('lenet5' if args.data_dir else 'digits_net')} "
          f"({'untrained' if args.untrained else 'trained'}), "
          f"{len(net)} layers")
    print(f"data       {ds.description}; {len(x)} test images, shape {x.shape[1:]}")
    net(x[:1])
    net.jacobian(x[:1])                       # warm-up: Numba compile (cached on disk)
    (F, J), t_fwd = _timed(lambda: net.jacobian(x, mode="forward", return_output=True))
    Jr, t_rev = _timed(lambda: net.jacobian(x, mode="reverse"))
    print(f"F(x)       shape {F.shape}")
    print(f"dF/dx      shape {J.shape}  ({J.dtype})")
    print(f"forward    {t_fwd * 1e3:9.1f} ms  (identity seed pushed through every layer)")
    print(f"reverse    {t_rev * 1e3:9.1f} ms  (one cotangent per output pulled back)")
    scale = float(np.abs(J).max()) or 1.0
    print(f"|fwd-rev|  {np.abs(J - Jr).max():.3g}  (relative {np.abs(J - Jr).max() / scale:.3g})")
    if args.fd_examples > 0:
        k = min(args.fd_examples, len(x))
        Jd, t_fd = _timed(lambda: jacobian_fd(net, x[:k].astype(np.float64)))
        err = np.abs(J[:k] - Jd).max()
        print(f"|fwd-fd|   {err:.3g}  (relative {err / scale:.3g}; central differences in "
              f"float64 on {k} example(s), {t_fd * 1e3:.0f} ms)")
        kinks = kink_census(net, x[:k])
        if kinks:
            where = "; ".join(f"{c} at layer {i} {name}" for i, name, c in kinks)
            print(f"kinks      {where}\n           (ReLU inputs at 0, tied max-pool windows: "
                  "here fwdderiv takes PyTorch's one-sided derivative while central "
                  "differences straddle the kink, so they may disagree)")
        else:
            print("kinks      none within 1e-6 of the point: finite differences should agree")
    if args.trace:
        print("\nper-layer forward derivative dH_k/dx of the first example:")
        print(net.jacobian(x[:1], intermediates=True).summary())
    side = x.shape[-1]
    for n in range(min(len(x), 2)):
        pred = int(np.argmax(F[n]))
        print(f"\nimage {n}: label {labels[n]}, predicted {pred} (p = {F[n, pred]:.3f})")
        Jn = J[n].reshape(F.shape[1], -1)
        for j in range(F.shape[1]):
            order = np.argsort(-np.abs(Jn[j]))[:args.top]
            cells = ", ".join(f"({i // side:2d},{i % side:2d}) {Jn[j, i]:+.2e}" for i in order)
            print(f"  class {j}: {cells}")
        print(f"  |dF_{pred}/dx|, darker = larger:")
        print(heatmap(Jn[pred].reshape(side, side)))
    return 0

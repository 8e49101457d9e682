"""``fwdderiv jacobian``: the forward derivative of a model for a batch of real images,
checked against reverse mode and finite differences."""
import json
import time
from pathlib import Path

import numpy as np

from ..core.kinks import kink_census
from ..interop.check import compare
from ..numeric import CENTRAL_STEP, jacobian_fd
from ._common import (CommandError, add_download_option, add_progress_options, load_data,
                      show_progress)
from ._inputs import model_and_images
from ._model import MODEL_HELP, check_inputs, load_inputs, load_model, model_kind
from .check import DISAGREE, report_lines

MODELS = ("lenet5", "lenet_mnist", "mnist_convnet", "mlp", "digits_net")

SHADES = " .:-=+*#%@"


def add_parser(sub):
    p = sub.add_parser(
        "jacobian", help="compute dF/dx of a model for a batch and check it",
        description="Compute the forward derivative dF/dx (the paper's recursion, eq. (6)) of a "
                    "model for a small batch of images (real held-out ones, or your own with "
                    "--inputs), check it against reverse mode and central finite differences "
                    "(a PASS/FAIL verdict; entries explained by kinks are counted apart; exit "
                    f"status {DISAGREE} on FAIL), and show which input pixels move each output "
                    "most.")
    p.add_argument("model_arg", nargs="?", default=None, metavar="MODEL",
                   help=f"the model: {MODEL_HELP} (default: digits_net on the digits, lenet5 "
                        "with --data-dir)")
    p.add_argument("--model", default=None, metavar="MODEL",
                   help="the same as the MODEL argument")
    p.add_argument("--inputs", default=None, metavar="X.NPY",
                   help="your own inputs, an .npy of shape (N, *S), float32 or float64 "
                        "(default: --batch held-out images of the data set)")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="write every number of the report to this JSON file")
    p.add_argument("--batch", type=int, default=4, help="number of images (default: 4)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                   help="computation dtype (default: float64, the reference)")
    p.add_argument("--data-dir", default=None,
                   help="directory with MNIST IDX files; default: scikit-learn's 8x8 digits "
                        "(offline)")
    p.add_argument("--untrained", action="store_true",
                   help="use freshly initialised weights instead of the trained, cached model "
                        "(zoo models)")
    p.add_argument("--fd-examples", type=int, default=1,
                   help="examples checked by finite differences (default: 1; 0 skips)")
    p.add_argument("--fd-tol", type=float, default=1e-6,
                   help="tolerance of the finite-difference check, relative to the largest "
                        "|dF/dx| (default: 1e-6)")
    p.add_argument("--top", type=int, default=3, help="pixels listed per class (default: 3)")
    p.add_argument("--trace", action="store_true",
                   help="also print dH_k/dx layer by layer (shape, share of non-zeros)")
    p.add_argument("--seed", type=int, default=0, help="model seed (default: 0)")
    p.add_argument("--explain", action="store_true",
                   help="print the plan of the forward and reverse Jacobian: the steps, which "
                        "fusion rules ran, windowed or dense, and where the windowed run "
                        "ends and why")
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


def _model_spec(args):
    if args.model_arg and args.model and args.model_arg != args.model:
        raise CommandError(f"--model {args.model} and MODEL {args.model_arg} differ; give the "
                           "model once")
    return args.model_arg or args.model


def load(args):
    """(net, x, labels or None, model description, data description, kind) for ``args``."""
    spec = _model_spec(args)
    kind = "zoo" if spec is None else model_kind(spec, "--model")
    x = load_inputs(args.inputs) if args.inputs else None
    if kind == "zoo":
        net, images, labels, ds = model_and_images(
            spec, args.data_dir, 1 if x is not None else args.batch,
            trained=not args.untrained, seed=args.seed, progress=show_progress(args),
            download=args.download)
        name = f"{spec or ('lenet5' if args.data_dir else 'digits_net')} " \
               f"({'untrained' if args.untrained else 'trained'})"
        if x is None:
            return net, images, labels, name, ds.description, kind
        check_inputs(net, x, name)
        return net, x, None, name, args.inputs, kind
    if args.untrained:
        raise CommandError(f"--untrained applies to zoo models; {spec} is a {kind} file with "
                           "its own weights")
    labels, where = None, args.inputs
    if x is None:
        ds = load_data("mnist" if args.data_dir else "digits", args.data_dir, args.download)
        x, labels, where = ds.x_test[:args.batch], ds.y_test[:args.batch], ds.description
    option = "--inputs" if args.inputs else ("--data-dir" if args.data_dir else
                                             "--inputs (the default digits do not fit)")
    loaded = load_model(spec, x, option="MODEL")
    check_inputs(loaded.net, x, spec, option=option, expected=loaded.input_shape)
    return loaded.net, x, labels, f"{spec} ({kind})", where, kind


def _position(i, s_in):
    """An input position as a string, without axes of size 1 (the channel of a grey image)."""
    idx = np.unravel_index(i, s_in)
    return "(" + ",".join(f"{v:2d}" for v, n in zip(idx, s_in) if n > 1) + ")"


def fd_check(net, x, tol):
    """Central finite differences (float64) against the float64 forward-mode Jacobian,
    with disagreements at kinks separated (:func:`fwdderiv.interop.check.compare` with the
    finite difference's step); returns (report, Jd, seconds)."""
    Jd, seconds = _timed(lambda: jacobian_fd(net, x))
    report = compare(net, x, Jd, tol=tol, fd_steps=CENTRAL_STEP * np.maximum(1.0, np.abs(x)))
    return report, Jd, seconds


def _check_args(args):
    """The options' own limits, before anything is loaded."""
    if args.batch < 1:
        raise ValueError(f"--batch must be at least 1, got {args.batch}")
    if args.fd_examples < 0:
        raise ValueError(f"--fd-examples must be >= 0 (0 skips the check), got "
                         f"{args.fd_examples}")
    if args.fd_examples > args.batch and not args.inputs:
        raise ValueError(f"--fd-examples ({args.fd_examples}) cannot exceed --batch "
                         f"({args.batch}); lower it or raise --batch")
    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    if not args.fd_tol > 0:
        raise ValueError(f"--fd-tol must be > 0, got {args.fd_tol}")


def _fd_section(net, x, J, scale, args, record):
    """The finite-difference check of the first ``--fd-examples`` inputs, with the kink
    census: prints it, adds it to ``record`` and returns ``(ok, verdict)``."""
    ok = True
    if args.fd_examples > 0:
        k = args.fd_examples
        x64 = x[:k].astype(np.float64)
        report, Jd, t_fd = fd_check(net, x64, args.fd_tol)
        err = float(np.abs(J[:k] - Jd).max())
        print(f"|fwd-fd|   {err:.3g}  (relative {err / scale:.3g}; central differences in "
              f"float64 on {k} example(s), {t_fd * 1e3:.0f} ms)")
        kinks = kink_census(net, x64)
        if kinks:
            where_k = "; ".join(f"{c} at layer {i} {layer}" for i, layer, c in kinks)
            print(f"kinks      {where_k}\n           (ReLU inputs at 0, tied max-pool windows: "
                  "here fwdderiv takes PyTorch's one-sided derivative while central "
                  "differences straddle the kink, so they may disagree)")
        else:
            print("kinks      none within 1e-6 of the point: finite differences should agree")
        for line in report_lines(report, args.fd_tol):
            print(f"  {line}")
        ok = report["ok"]
        explained = report.get("kink_explained", 0)
        verdict = (f"PASS: finite differences agree with dF/dx within {args.fd_tol:g} x "
                   f"max|dF/dx| ({explained} entries differ at kinks, explained; none "
                   "unexplained)") if ok else \
            (f"FAIL: finite differences disagree with dF/dx: {report['verdict']} "
             f"({report.get('unexplained', 'all')} entries unexplained, {explained} explained "
             "by kinks)")
        print(f"fd check   {verdict.split(':')[0]}")
        record["finite_differences"] = {
            **report, "examples": k, "seconds": t_fd, "max_abs_computed_dtype": err,
            "max_rel_computed_dtype": err / scale}
        record["kinks"] = [{"node": i, "layer": layer, "count": c} for i, layer, c in kinks]
    else:
        verdict = "finite-difference check skipped (--fd-examples 0)"
    return ok, verdict


def _top_inputs(x, F, J, labels, top, record):
    """For the first two inputs: the prediction, the ``top`` most influential inputs of
    each output and a picture of the predicted class's derivative (into ``record``)."""
    s_in, k_out = x.shape[1:], int(np.prod(F.shape[1:]))
    record["top"] = []
    for n in range(min(len(x), 2)):
        Fn = F[n].reshape(-1)
        pred = int(np.argmax(Fn))
        label = "" if labels is None else f"label {labels[n]}, "
        print(f"\nimage {n}: {label}predicted {pred} (F = {Fn[pred]:.3f})")
        Jn = J[n].reshape(k_out, -1)
        for j in range(min(k_out, 10)):
            order = np.argsort(-np.abs(Jn[j]))[:top]
            cells = ", ".join(f"{_position(i, s_in)} {Jn[j, i]:+.2e}" for i in order)
            print(f"  output {j}: {cells}")
            record["top"].append({"example": n, "output": j, "inputs": [
                [int(v) for v in np.unravel_index(i, s_in)] for i in order],
                "values": [float(Jn[j, i]) for i in order]})
        if len(s_in) >= 2:
            print(f"  |dF_{pred}/dx|, darker = larger:")
            picture = np.abs(Jn[pred].reshape(s_in)).reshape((-1,) + s_in[-2:]).sum(axis=0)
            print(heatmap(picture))


def run(args):
    _check_args(args)
    net, x, labels, name, where, kind = load(args)
    if args.fd_examples > len(x):
        raise ValueError(f"--fd-examples ({args.fd_examples}) cannot exceed the {len(x)} "
                         f"inputs of --inputs {args.inputs}")
    x = x.astype(args.dtype)
    print(f"model      {name}, {len(net.nodes)} layers")
    print(f"data       {where}; {len(x)} inputs, shape {x.shape[1:]}")
    if args.explain:
        for mode in ("forward", "reverse"):
            print(net.plan(x.shape[1:], mode=mode, dtype=x.dtype, batch=len(x)).explain())
    net(x[:1])
    net.jacobian(x[:1])                       # warm-up: Numba compile (cached on disk)
    (F, J), t_fwd = _timed(lambda: net.jacobian(x, mode="forward", return_output=True))
    Jr, t_rev = _timed(lambda: net.jacobian(x, mode="reverse"))
    print(f"F(x)       shape {F.shape}")
    print(f"dF/dx      shape {J.shape}  ({J.dtype})")
    print(f"forward    {t_fwd * 1e3:9.1f} ms  (identity seed pushed through every layer)")
    print(f"reverse    {t_rev * 1e3:9.1f} ms  (one cotangent per output pulled back)")
    scale = float(np.abs(J).max()) or 1.0
    fwd_rev = float(np.abs(J - Jr).max())
    print(f"|fwd-rev|  {fwd_rev:.3g}  (relative {fwd_rev / scale:.3g})")
    record = {"model": name, "kind": kind, "inputs": str(where), "inputs_shape": list(x.shape),
              "dtype": args.dtype, "output": F.tolist(), "labels": None if labels is None
              else [int(v) for v in labels], "jacobian_shape": list(J.shape), "scale": scale,
              "seconds": {"forward": t_fwd, "reverse": t_rev},
              "fwd_rev": {"max_abs": fwd_rev, "max_rel": fwd_rev / scale}}
    ok, verdict = _fd_section(net, x, J, scale, args, record)
    if args.trace:
        print("\nper-layer forward derivative dH_k/dx of the first example:")
        print(net.jacobian(x[:1], intermediates=True).summary())
    _top_inputs(x, F, J, labels, args.top, record)
    record["ok"] = ok
    record["verdict"] = "skipped" if args.fd_examples == 0 else ("pass" if ok else "fail")
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1))
        print(f"\nwrote {args.json}")
    print(f"\n{verdict}")
    return 0 if ok else DISAGREE

"""``fwdderiv jacobian``: the forward derivative of a model for a batch of real images,
checked against reverse mode and finite differences."""
import importlib.util
import json
import math
import time
from pathlib import Path

import numpy as np

from ..config import DEFAULT_MAX_MEMORY, tolerance
from ..core.jacobian import physical_memory
from ..core.kinks import kink_census
from ..interop.check import compare
from ..numeric import CENTRAL_STEP, jacobian_fd
from ._common import (CommandError, add_download_option, add_per_example_option,
                      add_progress_options, show_progress)
from ..models.trained import default_model
from ._classifier_args import add_image_size_option, class_name, dataset_images, zoo_image_size
from ._inputs import model_and_images
from ._model import MODEL_HELP, check_inputs, load_inputs, load_model, model_kind
from ._cluster import add_cluster_options, cluster_kwargs, sharded, where_run
from ._output import array_output, write_text
from .check import DISAGREE

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
                        "on --dataset mnist)")
    p.add_argument("--model", default=None, metavar="MODEL",
                   help="the same as the MODEL argument")
    add_per_example_option(p)
    p.add_argument("--inputs", default=None, metavar="X.NPY",
                   help="your own inputs, an .npy of shape (N, *S), float32 or float64 "
                        "(default: --batch held-out images of the data set)")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="write every number of the report to this JSON file")
    p.add_argument("--batch", type=int, default=4, help="number of images (default: 4)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                   help="computation dtype (default: float64, the reference)")
    p.add_argument("--data-dir", default=None,
                   help="the folder with MNIST's IDX files for --dataset mnist (default: "
                        "$FWDDERIV_DATA_DIR/mnist or ~/.cache/fwdderiv/data/mnist)")
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
    p.add_argument("--output", default=None, metavar="J.NPY",
                   help="write dF/dx to this file as it is computed, chunk by chunk, with "
                        "memory bounded by --max-memory: a .npy (a memory-mapped array; "
                        "np.load(path, mmap_mode='r') reads it), or a .zarr folder when "
                        "the zarr package is installed. The checks then run on the inputs "
                        "whose Jacobians fit the budget")
    p.add_argument("--max-memory", type=float, default=None, metavar="MIB",
                   help="MiB for the work of one Jacobian computation; the examples and "
                        "directions are split into chunks that fit (default: "
                        f"{DEFAULT_MAX_MEMORY // 2**20}, grown to one direction of one "
                        "example if that needs more)")
    p.add_argument("--show", type=int, default=4, metavar="N",
                   help="inputs whose prediction, most influential pixels and derivative "
                        "picture are printed (default: 4; all when fewer are given)")
    add_cluster_options(p, "default: about 16 MiB of dF/dx; with --output J.zarr, one "
                           "chunk of the array, written by the worker that computes it")
    add_download_option(add_progress_options(add_image_size_option(p)))
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
    """(net, x, labels or None, model description, data description, kind, class names or
    None) for ``args``."""
    spec = _model_spec(args)
    kind = "zoo" if spec is None else model_kind(spec, "--model")
    x = load_inputs(args.inputs) if args.inputs else None
    if kind == "zoo":
        net, images, labels, ds = model_and_images(
            spec, args.data_dir, 1 if x is not None else args.batch,
            trained=not args.untrained, seed=args.seed, progress=show_progress(args),
            download=args.download, dataset=args.dataset, image_size=zoo_image_size(args))
        name = f"{spec or default_model(ds.name)} " \
               f"({'untrained' if args.untrained else 'trained'})"
        if x is None:
            return net, images, labels, name, ds.description, kind, ds.classes
        check_inputs(net, x, name)
        return net, x, None, name, args.inputs, kind, None
    if args.untrained:
        raise CommandError(f"--untrained applies to zoo models; {spec} is a {kind} file with "
                           "its own weights")
    labels, where, classes = None, args.inputs, None
    if x is None:
        x, labels, ds, where = dataset_images(args, args.batch)
        classes = ds.classes
    option = "--inputs" if args.inputs else f"--dataset {args.dataset} (give --inputs X.npy)"
    loaded = load_model(spec, x, option="MODEL", inputs_option=option,
                        per_example=args.per_example)
    check_inputs(loaded.net, x, spec, option=option, expected=loaded.input_shape)
    return loaded.net, x, labels, f"{spec} ({kind})", where, kind, classes


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
    if args.show < 0:
        raise ValueError(f"--show must be >= 0, got {args.show}")
    if args.max_memory is not None and not args.max_memory * 2**20 >= 1:
        raise ValueError(f"--max-memory must be a positive number of MiB, got "
                         f"{args.max_memory:g}")
    if args.output is not None and Path(args.output).suffix not in (".npy", ".zarr"):
        raise ValueError(f"--output must end in .npy (or .zarr), got {args.output!r}; e.g. "
                         f"--output {Path(args.output).with_suffix('.npy')}")
    if args.output is not None and Path(args.output).suffix == ".zarr" and \
            importlib.util.find_spec("zarr") is None:
        raise ValueError(f"--output {args.output} needs the zarr package, which is not "
                         "installed: pip install zarr, or give a .npy file")


#: The definition of every relative error printed.
RELATIVE = "relative error = max |difference| / max |dF/dx| over the inputs compared"

#: What the untimed first call of each mode does.
WARM_UP = ("a first call of each mode on two inputs: Numba compiles its kernels or "
           "loads them from its cache")


def _error_line(label, diff, scale, what, tol):
    """One line: the relative error, its absolute size, what was compared, the
    tolerance."""
    return (f"{label:<10} relative {diff / scale:.2e}  (max abs {diff:.2e}; {what}; "
            f"tolerance {tol:g})")


def _fd_section(net, x, J, k, args, record):
    """The finite-difference check of the first ``k`` inputs, with the kink census (and,
    for a float32 ``J``, its check against the float64 reference): prints it, adds it
    to ``record`` and returns ``(ok, verdict)``."""
    if k == 0:
        why = "--fd-examples 0" if args.fd_examples == 0 else \
            "no input's Jacobian fits --max-memory for it beside the streamed result"
        return True, f"finite-difference check skipped ({why})"
    x64 = x[:k].astype(np.float64)
    if x.dtype == np.float32:
        _float32_line(net, x64, J, k, record)
    report, Jd, t_fd = fd_check(net, x64, args.fd_tol)
    print(_error_line("|fwd-fd|", report["max_abs"], report["scale"],
                      f"float64 forward mode vs central differences, {k} input(s), "
                      f"{t_fd * 1e3:.0f} ms", args.fd_tol))
    beyond, explained = report["beyond_tolerance"], report["kink_explained"]
    if beyond:
        print(f"{'':10} {beyond} entries beyond tolerance: {explained} where the "
              f"difference straddles a kink (explained), {report['unexplained']} "
              "unexplained")
    if beyond and report["ok"]:
        print(f"{'':10} every other entry is within tolerance")
    kinks = kink_census(net, x64)
    if kinks:
        where_k = "; ".join(f"{c} at layer {i} {layer}" for i, layer, c in kinks)
        print(f"kinks      {where_k}\n           (ReLU inputs at 0, tied max-pool windows: "
              "here fwdderiv takes PyTorch's one-sided derivative while central "
              "differences straddle the kink, so they may disagree)")
    else:
        print("kinks      none within 1e-6 of the point: finite differences should agree")
    for w in sorted(report["worst_per_output"], key=lambda w: -w["abs_error"])[:3]:
        if w["abs_error"] > args.fd_tol * report["scale"]:
            print(f"{'':10} output {tuple(w['output'])}: worst abs {w['abs_error']:.2e} at "
                  f"input {w['example']}, position {tuple(w['input'])}")
    ok = report["ok"]
    if not beyond:
        verdict = (f"PASS: finite differences agree with dF/dx within {args.fd_tol:g} x "
                   "max|dF/dx| at every entry")
    elif ok:
        verdict = (f"PASS: finite differences agree with dF/dx within {args.fd_tol:g} x "
                   f"max|dF/dx| except at {explained} entries whose difference straddles a "
                   f"kink (largest there {report['max_rel']:.2e}, explained)")
    else:
        verdict = (f"FAIL: finite differences disagree with dF/dx: {report['verdict']} "
                   f"({report['unexplained']} entries beyond {args.fd_tol:g} x max|dF/dx| "
                   f"unexplained, {explained} explained by kinks)")
    print(f"fd check   {verdict.split(':')[0]}: " + (
        "every entry within tolerance" if not beyond else
        f"{beyond} entries beyond tolerance, all where the difference straddles a kink"
        if report["ok"] else f"{report['unexplained']} entries beyond tolerance unexplained"))
    record["finite_differences"] = {**report, "examples": k, "seconds": t_fd}
    record["kinks"] = [{"node": i, "layer": layer, "count": c} for i, layer, c in kinks]
    return ok, verdict


def _float32_line(net, x64, J, k, record):
    """Print and record how far the float32 Jacobian of the first ``k`` inputs lies from
    the float64 one: the rounding of this computation, reported, not judged (a float32
    Jacobian from elsewhere is judged by ``fwdderiv check``)."""
    J64 = net.jacobian(x64)
    diff = float(np.abs(J[:k].astype(np.float64) - J64).max())
    scale = float(np.abs(J64).max()) or 1.0
    print(f"|f32-f64|  relative {diff / scale:.2e}  (max abs {diff:.2e}; float32 vs float64 "
          f"forward mode, {k} input(s): the float32 rounding, reported, not judged)")
    record["float32"] = {"max_abs": diff, "max_rel": diff / scale, "examples": k}


def _top_inputs(x, F, J, labels, top, show, record):
    """For the first ``show`` inputs: the prediction, the ``top`` most influential inputs
    of each output and a picture of the predicted class's derivative (into ``record``)."""
    s_in, k_out = x.shape[1:], int(np.prod(F.shape[1:]))
    record["top"] = []
    shown = min(len(x), show)
    if shown < len(x):
        print(f"\nshowing the first {shown} of {len(x)} inputs (--show N for more)")
    for n in range(shown):
        Fn = F[n].reshape(-1)
        pred = int(np.argmax(Fn))
        names = record.get("classes")
        label = "" if labels is None else f"label {class_name(names, labels[n])}, "
        print(f"\nimage {n}: {label}predicted {class_name(names, pred)} (F = {Fn[pred]:.3f})")
        Jn = J[n].reshape(k_out, -1)
        for j in range(min(k_out, 10)):
            order = np.argsort(-np.abs(Jn[j]))[:top]
            cells = ", ".join(f"{_position(i, s_in)} {Jn[j, i]:+.2e}" for i in order)
            print(f"  output {class_name(names, j)}: {cells}")
            record["top"].append({"example": n, "output": j, "inputs": [
                [int(v) for v in np.unravel_index(i, s_in)] for i in order],
                "values": [float(Jn[j, i]) for i in order]})
        if k_out > 10:
            print(f"  (outputs 10 to {k_out - 1} not listed)")
        if len(s_in) >= 2:
            print(f"  |dF_{pred}/dx|, darker = larger:")
            picture = np.abs(Jn[pred].reshape(s_in)).reshape((-1,) + s_in[-2:]).sum(axis=0)
            print(heatmap(picture))


def _warm_up(net, x, budget):
    """Seconds of a first forward and reverse Jacobian of two inputs (Numba compiling or
    loading its kernels for one example and for a batch), kept out of the timings."""
    t = time.perf_counter()
    net(x[:2])
    for mode in ("forward", "reverse"):
        net.jacobian(x[:2], mode=mode, max_memory=budget)
    return time.perf_counter() - t


def _fitting(n, per_input, budget, copies):
    """How many of ``n`` inputs can be checked in memory beside a streamed result:
    ``copies`` Jacobians of ``per_input`` bytes each within ``budget``."""
    return min(n, int(budget // max(1, copies * per_input)))


def run(args):
    _check_args(args)
    net, x, labels, name, where, kind, classes = load(args)
    if args.fd_examples > len(x):
        raise ValueError(f"--fd-examples ({args.fd_examples}) cannot exceed the {len(x)} "
                         f"inputs of --inputs {args.inputs}")
    x = x.astype(args.dtype)
    print(f"model      {name}, {len(net.nodes)} layers")
    print(f"data       {where}; {len(x)} inputs, shape {x.shape[1:]}")
    budget = None if args.max_memory is None else int(args.max_memory * 2**20)
    if args.explain:
        for mode in ("forward", "reverse"):
            print(net.plan(x.shape[1:], mode=mode, dtype=x.dtype, batch=len(x),
                           max_memory=budget).explain())
    shape = (len(x),) + tuple(net.output_shape(x.shape[1:])) + x.shape[1:]
    nbytes, total = math.prod(shape) * x.dtype.itemsize, physical_memory()
    if args.output is None and total is not None and nbytes > total:
        raise CommandError(f"dF/dx of shape {shape} needs {nbytes / 2**30:.1f} GiB, more "
                           f"than this machine's {total / 2**30:.1f} GiB of memory; add "
                           "--output J.npy to write it to disk as it is computed")
    warm = _warm_up(net, x, budget)
    print(f"warm-up    {warm * 1e3:9.1f} ms  ({WARM_UP}; not in the times below)")
    record = {"model": name, "kind": kind, "inputs": str(where), "inputs_shape": list(x.shape),
              "dtype": args.dtype, "labels": None if labels is None
              else [int(v) for v in labels], "relative_error": RELATIVE,
              "classes": None if classes is None else list(classes),
              "written_to": args.output, "seconds": {"warm_up_not_counted": warm}}
    if sharded(args):
        status = _report(net, x, labels, args, budget, args.output, record,
                         compute=_sharded(net, x, args, budget, record))
    elif args.output is None:
        return _report(net, x, labels, args, budget, None, record)
    else:
        with array_output(args.output, shape, x.dtype) as J:
            status = _report(net, x, labels, args, budget, J, record)
    if args.output is not None:
        print(f"wrote {args.output} (np.load({args.output!r}, mmap_mode='r') reads it)"
              if args.output.endswith(".npy") else f"wrote {args.output}")
    return status


def _sharded(net, x, args, budget, record):
    """The forward Jacobian shard by shard (:func:`fwdderiv.distributed.jacobian`), as a
    function for :func:`_report`; the sharding goes into ``record``."""
    from ..distributed import jacobian, jacobian_shard_size
    size = args.shard_size or jacobian_shard_size(net, x.shape[1:], x.dtype)
    record["sharding"] = {"where": where_run(args), "shard_size": size,
                          "shards": -(-len(x) // size)}
    print(f"sharded    {record['sharding']['shards']} shards of up to {size} inputs on "
          f"{where_run(args)}")
    return lambda: jacobian(net, x, mode="forward", output=args.output, return_output=True,
                            max_memory=budget, progress=show_progress(args),
                            **cluster_kwargs(args))


def _report(net, x, labels, args, budget, out, record, compute=None):
    """Compute, check and print dF/dx (into ``out`` when given, where only the inputs
    whose Jacobians fit ``budget`` are checked); fills ``record`` and returns the exit
    status. ``compute`` returns ``(F, J)`` instead of ``net.jacobian`` (sharded, with
    ``out`` the output's path or None)."""
    (F, J), t_fwd = _timed(compute or (lambda: net.jacobian(
        x, mode="forward", return_output=True, max_memory=budget, out=out)))
    entries = int(np.prod(J.shape[1:]))
    per_input = entries * x.dtype.itemsize
    n_rev, k = len(x), args.fd_examples
    if out is not None:                   # check what fits in memory beside the stream
        room = budget or DEFAULT_MAX_MEMORY
        n_rev = _fitting(len(x), per_input, room, 3)
        k = min(k, _fitting(len(x), entries * 8, room, 12))
    Jr, t_rev = _timed(lambda: net.jacobian(x[:n_rev], mode="reverse", max_memory=budget))
    Jf = J[:n_rev] if n_rev else J[:0]
    print(f"F(x)       shape {F.shape}")
    print(f"dF/dx      shape {J.shape}  ({J.dtype})"
          + (f", written to {args.output}" if out is not None else ""))
    print(f"forward    {t_fwd * 1e3:9.1f} ms  (identity seed pushed through every layer, "
          f"{len(x)} inputs)")
    print(f"reverse    {t_rev * 1e3:9.1f} ms  (one cotangent per output pulled back, "
          f"{n_rev} inputs)")
    print(f"errors     {RELATIVE}")
    scale = (float(np.abs(Jf).max()) if Jf.size else 0.0) or 1.0
    fwd_rev = float(np.abs(Jf - Jr).max()) if Jr.size else 0.0
    tol_rev = tolerance(x.dtype, "rtol")
    rev_ok = fwd_rev <= tol_rev * scale
    if n_rev:
        print(_error_line("|fwd-rev|", fwd_rev, scale, f"forward vs reverse mode, {n_rev} "
                          f"input(s), {x.dtype}", tol_rev))
    else:
        print(f"|fwd-rev|  not checked: one input's Jacobian ({per_input / 2**20:.0f} MiB) "
              "does not fit --max-memory beside the streamed result")
    if out is not None and k < args.fd_examples:
        print(f"           finite differences on {k} of the --fd-examples "
              f"{args.fd_examples} inputs: the rest do not fit --max-memory")
    record["seconds"].update(forward=t_fwd, reverse=t_rev)
    record.update({"output": F.tolist(), "jacobian_shape": list(J.shape), "scale": scale,
                   "fwd_rev": {"max_abs": fwd_rev, "max_rel": fwd_rev / scale,
                               "inputs": n_rev, "tolerance": tol_rev, "ok": rev_ok}})
    fd_ok, verdict = _fd_section(net, x, J, k, args, record)
    ok = fd_ok and rev_ok
    if not rev_ok:
        verdict = (f"FAIL: forward and reverse mode differ by {fwd_rev / scale:.2e} x "
                   f"max|dF/dx|, beyond {tol_rev:g}" + ("" if fd_ok else "; " + verdict))
    elif k == 0:
        verdict = (f"forward and reverse mode agree within {tol_rev:g} x max|dF/dx|; "
                   f"{verdict}")
    if args.trace:
        print("\nper-layer forward derivative dH_k/dx of the first example:")
        print(net.jacobian(x[:1], intermediates=True).summary())
    if out is None or per_input <= (budget or DEFAULT_MAX_MEMORY):
        _top_inputs(x, F, J, labels, args.top, args.show, record)
    record["ok"] = ok
    record["verdict"] = "skipped" if k == 0 and rev_ok else ("pass" if ok else "fail")
    if args.json:
        write_text(args.json, json.dumps(record, indent=1))
        print(f"\nwrote {args.json}")
    print(f"\n{verdict}")
    return 0 if ok else DISAGREE

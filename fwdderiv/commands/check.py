"""``fwdderiv check``: compare another framework's Jacobian with the float64 reference."""
import contextlib
import functools
import importlib.util
import json

import numpy as np

from ._classifier_args import add_dataset_inputs, inputs_or_dataset
from ._cluster import add_cluster_options, sharded, where_run
from ._common import add_per_example_option, show_progress
from ._output import write_text

#: Exit status when the Jacobians disagree beyond what kinks explain: 1, a failed check
#: (2 is a usage error, as for every fwdderiv command).
DISAGREE = 1


def add_parser(sub):
    p = sub.add_parser(
        "check", help="check another framework's Jacobian against the float64 reference",
        description="Compute the float64 Jacobian dF/dx of MODEL at the inputs and compare it "
                    "with J.npy (layout (N, *S_out, *S_in), as torch.func.vmap(jacfwd)) or, "
                    "without --jacobian, with PyTorch's and JAX's own (each when installed; "
                    "a model one of them cannot run is reported as not comparable). Entries "
                    "that differ only at kinks (ReLU at 0, max-pool ties) are reported apart. "
                    "Exit 0 when every "
                    f"other entry is within tolerance, {DISAGREE} otherwise.")
    p.add_argument("model", help="a fwdderiv .npz, an .onnx file, or file.py:factory "
                                 "returning a torch.nn.Module")
    p.add_argument("--inputs", default=None,
                   help="X.npy of shape (N, *S) (default: the first --batch held-out images "
                        "of --dataset)")
    add_per_example_option(p)
    add_dataset_inputs(p, 4, "held-out images of --dataset checked when no --inputs is given")
    p.add_argument("--jacobian", default=None,
                   help="J.npy to check (default: PyTorch's and JAX's)")
    p.add_argument("--tol", type=float, default=None,
                   help="tolerance relative to the largest |J| (default: 1e-8 for a float64 "
                        "Jacobian, 1e-5 for a float32 one, whose report also says whether "
                        "it or fwdderiv's own float32 Jacobian is off the float64 reference)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="without --jacobian: the dtype PyTorch and JAX compute in (float32 "
                        "checks their float32 Jacobians, and fwdderiv's, against the float64 "
                        "reference; default: float64)")
    p.add_argument("--json", default=None, help="write the full report to this file")
    p.add_argument("--output", default=None, metavar="J.npy|J.zarr",
                   help="also write fwdderiv's float64 reference Jacobian, the one every "
                        "comparison is against, to this file (computed in a pass of its "
                        "own; .zarr, needing fwdderiv[zarr], is written chunk by chunk by "
                        "the workers with --workers/--scheduler, so it need not fit in "
                        "memory)")
    add_cluster_options(p, "default: about 4 MiB of Jacobian; each shard computes both "
                           "Jacobians and the report is assembled from the shards', with "
                           "errors relative to the largest |J| over all inputs")
    p.set_defaults(run=run)
    return p


def torch_jacobian(net, model, x, dtype="float64"):
    """PyTorch's Jacobian of ``model`` (or of ``fwdderiv.to_torch(net)``) at ``x`` by
    ``torch.func.vmap(torch.func.jacfwd(f))``, computed in ``dtype``."""
    import copy
    import torch
    import fwdderiv as fd
    model = copy.deepcopy(model) if model is not None else fd.to_torch(net)
    model = model.double() if dtype == "float64" else model.float()
    f = lambda v: model(v[None])[0]  # noqa: E731
    with torch.no_grad():
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=dtype))
        return torch.func.vmap(torch.func.jacfwd(f))(xt).numpy()


def jax_jacobian(net, x, dtype="float64"):
    """JAX's Jacobian of ``net`` (translated by :func:`fwdderiv.to_jax`) at ``x``, computed
    by ``jax.jit(jax.vmap(jax.jacfwd(f)))`` in ``dtype`` (float64 in JAX's 64-bit mode,
    restored afterwards)."""
    import jax
    from ..interop.jax_export import to_jax, x64
    with x64():
        f = to_jax(net, dtype)
        J = jax.jit(jax.vmap(jax.jacfwd(lambda v: f(v[None])[0])))(
            jax.numpy.asarray(x, dtype=dtype))
        return np.asarray(J, dtype=dtype)


def jax_peer(net, model, x, dtype="float64"):
    """:func:`jax_jacobian` with the arguments of every peer (``model`` unused)."""
    return jax_jacobian(net, x, dtype)


#: The frameworks compared without --jacobian: name, module needed, Jacobian function.
PEERS = (("PyTorch", "torch", "torch.func.vmap(torch.func.jacfwd(f))", torch_jacobian),
         ("JAX", "jax", "jax.jit(jax.vmap(jax.jacfwd(f))) of fwdderiv.to_jax(net)", jax_peer))


def peer_jacobian(jac, net, model, dtype, x):
    """``jac(net, model, x, dtype)``: a peer's Jacobian of a shard's rows ``x`` (on a
    worker, with the other arguments bound by ``functools.partial``)."""
    return jac(net, model, x, dtype)


def peer_reports(net, model, x, tol, dtype="float64", sharding=None):
    """Each installed peer's Jacobian in ``dtype`` against fwdderiv's float64 reference; a
    peer that cannot run the model is reported as ``{"comparable": False, "reason": ...}``
    instead of failing. ``sharding``: keyword arguments of
    :func:`fwdderiv.distributed.compare` to compare shard by shard (each shard computes
    the peer's Jacobian and fwdderiv's), None for one call here."""
    from ..distributed import compare as compare_sharded
    from ..interop.check import compare
    reports = {}
    for name, needs, how, jac in PEERS:
        how = f"{how}, {dtype}"
        if importlib.util.find_spec(needs) is None:
            reports[name] = {"comparable": False, "reason": f"{needs} is not installed",
                             "checked": how}
            continue
        try:
            if sharding is None:
                other = jac(net, model, x, dtype)
            else:
                report = compare_sharded(net, x, functools.partial(
                    peer_jacobian, jac, net, model, dtype), tol=tol, **sharding)
        except (TypeError, ValueError, NotImplementedError, RuntimeError) as err:
            reports[name] = {"comparable": False, "checked": how,
                             "reason": " ".join(str(err).split())}
            continue
        if sharding is None:
            report = compare(net, x, other, tol=tol)
        reports[name] = {"comparable": True, "checked": how, **report}
    return reports


def report_lines(report, tol):
    """The printed summary of one :func:`fwdderiv.interop.check.compare` report."""
    if "message" in report:
        return [report["message"]]
    tol = report["tolerance"] if tol is None else tol
    lines = [f"relative error {report['max_rel']:.3e} (max |J - reference| / max|J|; max "
             f"abs {report['max_abs']:.3e}), tolerance {tol:g}"
             + (f" ({report['tolerance_rule']})" if "tolerance_rule" in report else ""),
             f"beyond tolerance: {report['beyond_tolerance']} entries, "
             f"{report['kink_explained']} explained by kinks, {report['unexplained']} "
             "unexplained"]
    for w in sorted(report["worst_per_output"], key=lambda w: -w["abs_error"])[:5]:
        lines.append(f"output {tuple(w['output'])}: worst abs {w['abs_error']:.3e} at example "
                     f"{w['example']}, input {tuple(w['input'])}")
    sides = report.get("float32")
    if sides is not None and sides["units_near_kinks"]:
        lines.append(f"{sides['units_near_kinks']} activation inputs lie within float32 "
                     f"rounding of a kink: a float32 pass may decide them either way, and "
                     f"entries that differ by exactly that count as kink-explained")
    if sides is not None:
        for side, who in (("other", "this float32 Jacobian"), ("fwdderiv", "fwdderiv's float32")):
            r = sides[side]
            lines.append(f"{who}: {r['max_rel']:.1e} of max|J| off the float64 reference, "
                         f"{r['beyond_tolerance']} entries beyond tolerance, "
                         f"{r['kink_explained']} of them at kinks"
                         + (" (off the reference)" if r["off_reference"] else ""))
    return lines


def run(args):
    from ._model import check_inputs, load_inputs, load_model, model_kind
    x = inputs_or_dataset(args, args.batch)
    if model_kind(args.model) == "zoo":
        raise ValueError(f"check: MODEL {args.model} is a zoo name; check takes a model file: "
                         "a .npz, an .onnx or file.py:factory (save a zoo model with "
                         f"fwdderiv train --model {args.model} --output {args.model}.npz)")
    loaded = load_model(args.model, x, option="MODEL", per_example=args.per_example)
    check_inputs(loaded.net, x, args.model, expected=loaded.input_shape)
    x = x.astype(np.float64)
    net, model = loaded.net, loaded.module
    print(f"fwdderiv check: {args.model} at {x.shape[0]} inputs"
          + (f", shard by shard on {where_run(args)}" if sharded(args) else ""))
    with _sharding(args) as sharding:
        if args.jacobian:
            other = load_inputs(args.jacobian, option="--jacobian")
            reports = {args.jacobian: {**_compare(net, x, other, args.tol, sharding),
                                       "checked": args.jacobian}}
            report = dict(reports[args.jacobian])     # also flat, as before the peers
        else:
            reports = peer_reports(net, model, x, args.tol, args.dtype, sharding)
            report = {"tolerance": args.tol}
        if args.output:
            _write_reference(net, x, args.output, sharding)
    verdicts = []
    for name, r in reports.items():
        if r.get("comparable", True) is False:
            print(f"{name}: not comparable: {r['reason']}")
            continue
        print(f"{name} ({r['checked']}):" if name != r["checked"] else f"{name}:")
        for line in report_lines(r, args.tol):
            print(f"  {line}")
        verdicts.append((name, r))
    ok = bool(verdicts) and all(r["ok"] for _, r in verdicts)
    if not verdicts:
        print("FAIL: nothing to compare with (give --jacobian J.npy, or install torch or jax)")
    elif ok:
        print("PASS: " + "; ".join(f"{name}: {_pass_reason(r)}" for name, r in verdicts))
    else:
        print("FAIL: " + "; ".join(f"{name}: {r['verdict']}" for name, r in verdicts
                                   if not r["ok"]))
    report.update({"model": args.model, "inputs_shape": list(x.shape), "ok": ok,
                   "comparisons": reports})
    if args.json:
        write_text(args.json, json.dumps(report, indent=1))
    return 0 if ok else DISAGREE


def _write_reference(net, x, path, sharding):
    """The float64 reference Jacobian into ``path`` (.npy or .zarr), shard by shard on the
    command's cluster when there is one (:func:`fwdderiv.distributed.jacobian`)."""
    from ..distributed import jacobian as sharded_jacobian
    kwargs = {} if sharding is None else sharding
    sharded_jacobian(net, x, output=path, **kwargs)
    print(f"wrote the float64 reference Jacobian, shape ({len(x)}, "
          f"{', '.join(map(str, net.output_shape(x.shape[1:]) + x.shape[1:]))}), to {path}")


@contextlib.contextmanager
def _sharding(args):
    """Keyword arguments of :func:`fwdderiv.distributed.compare` on one cluster for the
    whole command (``--workers``/``--scheduler``), or None."""
    if not sharded(args):
        yield None
        return
    from ..distributed import connect
    with connect(args.workers, args.scheduler, "fwdderiv check") as client:
        yield {"scheduler": client, "shard_size": args.shard_size,
               "progress": show_progress(args)}


def _compare(net, x, other, tol, sharding):
    """:func:`fwdderiv.interop.check.compare`, shard by shard with ``sharding``."""
    if sharding is None:
        from ..interop.check import compare
        return compare(net, x, other, tol=tol)
    from ..distributed import compare
    return compare(net, x, other, tol=tol, **sharding)


def _pass_reason(r):
    """Why a passing comparison passes, in words (entries beyond tolerance are all
    explained by kinks)."""
    if not r["beyond_tolerance"]:
        return f"every entry within {r['tolerance']:g} x max|J|"
    return (f"every entry within {r['tolerance']:g} x max|J| except {r['kink_explained']} "
            "at kinks (ReLU inputs at 0, max-pool ties), where either one-sided derivative "
            "is right")

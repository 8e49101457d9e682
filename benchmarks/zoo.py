"""The architecture zoo: fwdderiv against torch.func on well-known vision architectures.

    python -m benchmarks.zoo                       # every architecture, 5 rounds
    python -m benchmarks.zoo --models resnet18,vit --rounds 9 --json runs/zoo.json

The architectures are the small-but-faithful PyTorch versions of
``tests/interop/architectures.py`` (ResNet-18, MobileNetV2/V3, EfficientNet-B0,
ShuffleNetV2, DenseNet, GoogLeNet, U-Net, FSRCNN, ViT, MLP-Mixer, ConvNeXt, Swin, a
BoTNet), imported with ``fwdderiv.from_torch``, at batch 1 in float32 (weights and
input). For each, two pairs are timed in alternation (ours, peer, ours, peer, ...) after
a warm-up of both (:func:`benchmarks.alternate.compare`):

- reverse: ``net.jacobian(x, mode="reverse")`` against ``vmap(jacrev(f))``;
- forward: ``net.jacobian(x, mode="forward")`` against ``vmap(jacfwd(f))``,

where ``f(v) = model(v[None])[0]`` is the PyTorch model itself. Before a peer runs, its
memory is estimated (:func:`benchmarks.cases.estimate_peak_bytes`: vmap(jacfwd) keeps every
intermediate's tangent for all D input directions); above ``--max-peer-memory`` the pair
is not run and the row gives the estimate. The table reports each method's median and
min-max over the rounds, the median and range of the per-round ratio peer / fwdderiv
(above 1: fwdderiv is faster), and the largest difference of the two Jacobians relative
to fwdderiv's largest entry (``DISAGREE`` above the float32 tolerance of
:data:`benchmarks.jacobian.TOLERANCE`; the exit status is then 2). A model that does not
import, or a peer that fails, gets a row saying so.

Threads: each library's default (all cores) unless ``--threads N``
(:func:`benchmarks.training.set_threads`). On a machine shared with other work, use
``--threads 1``: with two threads per library and a load above the core count, both
methods slow down by 10-100x on these small models (idle OpenMP and Numba workers spin
while the other library runs) and the rounds scatter widely.
"""
import argparse
import json
import sys
import time
import warnings

import numpy as np

from benchmarks import alternate, cases, peers
from benchmarks.jacobian import TOLERANCE, machine_info
from benchmarks.training import set_threads

#: (mode, fwdderiv's method, the peer's) timed for every model.
PAIRS = (("reverse", "fwdderiv-rev", "torch-jacrev"),
         ("forward", "fwdderiv-fwd", "torch-jacfwd"))

COLUMNS = ("model", "input", "mode", "fwdderiv ms (min-max)", "torch.func ms (min-max)",
           "torch / fwdderiv (range)", "max rel. diff", "status")


def architectures():
    """name -> (builder, per-example input shape), from the interop tests."""
    from tests.interop.architectures import ARCHITECTURES
    return ARCHITECTURES


def build_parser():
    names = ",".join(architectures())
    p = argparse.ArgumentParser(prog="python -m benchmarks.zoo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=None, metavar="A,B,...",
                   help=f"comma list of architectures (default: all of {names})")
    p.add_argument("--modes", default="reverse,forward",
                   help="reverse,forward or one of them (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=5,
                   help="alternating rounds per pair (default: %(default)s)")
    p.add_argument("--max-peer-memory", type=float, default=4.0, metavar="GIB",
                   help="estimated peer memory above which a pair is not run and the "
                        "estimate is reported instead (default: %(default)s GiB)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="limit numba, BLAS and torch to N threads (default: each "
                        "library's own default)")
    p.add_argument("--seed", type=int, default=0, help="weight and input seed")
    p.add_argument("--json", metavar="PATH", help="also write every number to this file")
    return p


def load(name, seed):
    """(float32 PyTorch model, float32 input batch of one, imported fwdderiv net)."""
    import torch

    import fwdderiv as fd

    build, in_shape = architectures()[name]
    model = build(seed=seed).float()
    for q in model.parameters():
        q.requires_grad_(False)
    x = np.random.default_rng(seed).random((1,) + tuple(in_shape)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = fd.from_torch(model, torch.from_numpy(x))
    return model, x, net


def peer_stats(net, in_shape):
    """The sizes :func:`benchmarks.cases.estimate_peak_bytes` needs, from the imported
    graph: input and output sizes, every intermediate value, the largest conv unfold."""
    shapes = net.shapes(in_shape)
    shape_of = dict(zip([net.INPUT] + [name for name, _, _ in net.nodes], shapes))
    unfold = 0
    for name, layer, inputs in net.nodes:
        w = getattr(layer, "params", {}).get("weight")
        if type(layer).__name__ == "Conv2d" and w is not None:
            cin, hw = shape_of[inputs[0]][0], int(np.prod(shape_of[name][1:]))
            unfold = max(unfold, cin * w.shape[2] * w.shape[3] * hw)
    return {"D": int(np.prod(in_shape)), "K": int(np.prod(shapes[-1])),
            "act_elems": int(sum(np.prod(s) for s in shapes)), "im2col_max": unfold}


def fwdderiv_method(net, name):
    mode = "forward" if name == "fwdderiv-fwd" else "reverse"
    return peers.Method(name, lambda x: np.ascontiguousarray(x, dtype=np.float32),
                        lambda x: net.jacobian(x, mode=mode), lambda J: J)


def torch_method(model, name):
    """``vmap(jacfwd(f))`` or ``vmap(jacrev(f))`` of the PyTorch model itself."""
    import torch
    from torch.func import jacfwd, jacrev, vmap

    transform = jacfwd if name == "torch-jacfwd" else jacrev
    jac = vmap(transform(lambda v: model(v[None])[0]))
    return peers.Method(name, lambda x: torch.from_numpy(np.array(x, dtype=np.float32)),
                        jac, lambda J: J.detach().numpy(),
                        f"torch {torch.__version__}, {torch.get_num_threads()} threads")


def failure(exc):
    """A one-line reason for a table cell: the exception's first line, shortened."""
    first = (str(exc).strip().splitlines() or [""])[0].replace("|", "/")
    return f"{type(exc).__name__}: {first[:160]}"


def measure_pair(model, net, x, pair, rounds, limit_bytes):
    """One row's numbers: the pair timed in alternation, or why it was not."""
    mode, ours, peer = pair
    est = cases.estimate_peak_bytes(peer, peer_stats(net, x.shape[1:]), 1, 4)
    row = {"mode": mode, "ours": ours, "peer": peer, "peer_estimate_bytes": est}
    if est > limit_bytes:
        return dict(row, status=f"skipped: {peer} needs about {cases.gib(est)}")
    try:
        ta, tb, err = alternate.compare(fwdderiv_method(net, ours), torch_method(model, peer),
                                        x, rounds)
    except Exception as exc:      # a peer or method that fails: report, go on
        return dict(row, status=f"error: {failure(exc)}")
    ratio = tb / ta
    ok = err <= TOLERANCE[("exact", "float32")]
    return dict(row, status="ok" if ok else "DISAGREE", fwdderiv_s=ta.tolist(),
                peer_s=tb.tolist(), fwdderiv_ms=1e3 * float(np.median(ta)),
                peer_ms=1e3 * float(np.median(tb)), ratio_median=float(np.median(ratio)),
                ratio_min=float(ratio.min()), ratio_max=float(ratio.max()),
                max_rel_diff=err)


def run_model(name, modes, args):
    """Rows of one architecture (one per mode, or one saying it does not import)."""
    in_shape = list(architectures()[name][1])
    base = {"model": name, "input": in_shape, "batch": 1, "dtype": "float32"}
    try:
        model, x, net = load(name, args.seed)
    except Exception as exc:
        return [dict(base, mode="-", status=f"import failed: {failure(exc)}")]
    return [dict(base, **measure_pair(model, net, x, pair, args.rounds,
                                      args.max_peer_memory * 2**30))
            for pair in PAIRS if pair[0] in modes]


def ms_range(times):
    t = 1e3 * np.asarray(times)
    return f"{np.median(t):,.1f} ({t.min():,.1f}-{t.max():,.1f})"


def table_row(r):
    shape = "x".join(map(str, r["input"]))
    if "fwdderiv_s" not in r:
        return (r["model"], shape, r["mode"], "", "", "", "", r["status"])
    return (r["model"], shape, r["mode"], ms_range(r["fwdderiv_s"]), ms_range(r["peer_s"]),
            f"**{r['ratio_median']:.2f}x** ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})",
            f"{r['max_rel_diff']:.1e}", r["status"])


def markdown(rows):
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return "\n".join(lines + ["| " + " | ".join(table_row(r)) + " |" for r in rows])


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    known = architectures()
    names = args.models.split(",") if args.models else list(known)
    unknown = [n for n in names if n not in known]
    modes = args.modes.split(",")
    if unknown:
        parser.error(f"--models: unknown {unknown}; expected some of {sorted(known)}")
    if args.rounds < 1 or not set(modes) <= {"reverse", "forward"}:
        parser.error("--rounds must be at least 1 and --modes a subset of reverse,forward")
    if args.threads:
        set_threads(args.threads)
    rows = []
    for name in names:
        t0 = time.perf_counter()
        rows += run_model(name, modes, args)
        print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    meta = machine_info(argparse.Namespace(without=("jax",)))
    print(f"batch 1, float32, {args.rounds} alternating rounds; {meta['date']}; "
          f"{meta['cpu']}, {meta['cores']} cores; torch {meta['versions'].get('torch')}\n")
    print(markdown(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)
    return 2 if any(r["status"] == "DISAGREE" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

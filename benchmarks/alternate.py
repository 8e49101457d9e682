"""fwdderiv against one peer, alternating: A B A B ... in one process, on the same model,
weights and inputs; reports each method's median time and the ratio's median and spread.

This machine's absolute times move by up to 2x between runs (and other work on the cores
moves them within a run); timing the two methods in alternation exposes both to the same
conditions, so the per-round ratio is what to read.

    python -m benchmarks.alternate --model resnet20a --batch 4 --dtype float32 \\
        --methods fwdderiv-fwd,torch-jacfwd,fwdderiv-rev,torch-jacrev --rounds 5
"""
import argparse
import json
import sys
import time

import numpy as np

from benchmarks import cases, peers


def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.alternate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="lenet5", choices=sorted(cases.MODELS))
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--methods", default="fwdderiv-fwd,torch-jacfwd",
                   help="comma list of pairs 'ours,peer,ours,peer...' (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=5, help="A B rounds per pair")
    p.add_argument("--json", help="also write the results to this file")
    return p


def time_call(method, xp):
    t0 = time.perf_counter()
    method.run(xp)
    return time.perf_counter() - t0


def compare(ours, peer, x, rounds):
    """Warm both up, then alternate; returns per-round times (s) and the agreement."""
    xa, xb = ours.prepare(x), peer.prepare(x)
    peer.compile(xb)
    Ja, Jb = ours.to_numpy(ours.run(xa)), peer.to_numpy(peer.run(xb))   # warm-up
    err = float(np.abs(Ja - Jb).max() / max(np.abs(Ja).max(), 1e-300))
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(time_call(ours, xa))
        tb.append(time_call(peer, xb))
    return np.array(ta), np.array(tb), err


def main(argv=None):
    args = build_parser().parse_args(argv)
    names = args.methods.split(",")
    if len(names) % 2:
        build_parser().error("--methods takes pairs: ours,peer[,ours,peer...]")
    net, in_shape = cases.build_model(args.model)
    x = np.random.default_rng(0).random((args.batch,) + in_shape).astype(args.dtype)
    stats = cases.model_stats(net, in_shape)
    have = {f for f in ("torch", "jax") if peers.available(f)}
    rows = []
    for a, b in zip(names[::2], names[1::2]):
        ma, mb = (peers.make_method(n, net, args.dtype, stats, have) for n in (a, b))
        ta, tb, err = compare(ma, mb, x, args.rounds)
        ratio = tb / ta
        row = {"model": args.model, "batch": args.batch, "dtype": args.dtype, "ours": a,
               "peer": b, "ours_ms": 1e3 * float(np.median(ta)),
               "peer_ms": 1e3 * float(np.median(tb)), "ratio_median": float(np.median(ratio)),
               "ratio_min": float(ratio.min()), "ratio_max": float(ratio.max()),
               "rounds": args.rounds, "max_rel_diff": err}
        rows.append(row)
        print(f"{args.model} B={args.batch} {args.dtype}: {a} {row['ours_ms']:.1f} ms, "
              f"{b} {row['peer_ms']:.1f} ms; {b}/{a} = {row['ratio_median']:.2f}x "
              f"(rounds {row['ratio_min']:.2f}-{row['ratio_max']:.2f}); "
              f"max rel. diff {err:.1e}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

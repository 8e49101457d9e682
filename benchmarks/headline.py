"""The README's speed table: fwdderiv against torch.func and JAX on LeNet-5 (the paper's
kind of network) and ResNet-20, each pair alternating in one process (A B A B ...), with
the machine and the date.

    python -m benchmarks.headline --rounds 5 > table.md

Each row is one pair timed in alternation on the same weights and inputs; the ratio is
peer time over fwdderiv time per round (above 1: fwdderiv is faster), its median and its
range over the rounds. Compile time is excluded (each method is warmed up first), and
every pair's Jacobians are compared (largest difference relative to the largest entry).
"""
import argparse
import sys
import time

import numpy as np

from benchmarks import alternate, cases, peers
from benchmarks.jacobian import machine_info

#: (model, batch, dtype, fwdderiv's method, the peer's).
PAIRS = (
    ("lenet5", 1, "float32", "fwdderiv-fwd", "torch-jacfwd"),
    ("lenet5", 128, "float32", "fwdderiv-fwd", "torch-jacfwd"),
    ("lenet5", 128, "float32", "fwdderiv-fwd", "jax-jacfwd"),
    ("lenet5", 128, "float32", "fwdderiv-rev", "torch-jacrev"),
    ("lenet5", 16, "float64", "fwdderiv-fwd", "torch-jacfwd"),    # B=128 needs 28 GiB
    ("resnet20a", 1, "float32", "fwdderiv-fwd", "torch-jacfwd"),
    ("resnet20a", 1, "float32", "fwdderiv-rev", "torch-jacrev"),
)


#: The table's first two lines (the README's table starts with them).
HEADER = ("| model | B | dtype | pair | fwdderiv ms | peer ms | peer / fwdderiv (range) "
          "| max rel. diff |\n|---|---:|---|---|---:|---:|---|---:|")


def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.headline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5,
                   help="alternating rounds per pair (default: %(default)s)")
    p.add_argument("--pairs", default=None, metavar="I,J,...",
                   help="only these rows of the table, numbered from 0 (default: all)")
    return p


def measure(pair, rounds):
    """One row: the pair timed in alternation; None where the peer is not installed."""
    model, batch, dtype, ours, peer = pair
    have = {f for f in ("torch", "jax") if peers.available(f)}
    if peers.METHOD_NEEDS[peer] not in have:
        return None
    net, in_shape = cases.build_model(model)
    x = np.random.default_rng(0).random((batch,) + in_shape).astype(dtype)
    stats = cases.model_stats(net, in_shape)
    a, b = (peers.make_method(n, net, dtype, stats, have) for n in (ours, peer))
    ta, tb, err = alternate.compare(a, b, x, rounds)
    ratio = tb / ta
    return (f"{model} | {batch} | {dtype} | {ours} vs {peer} | {1e3 * np.median(ta):,.1f} | "
            f"{1e3 * np.median(tb):,.1f} | **{np.median(ratio):.1f}x** "
            f"({ratio.min():.1f}-{ratio.max():.1f}) | {err:.0e}")


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.rounds < 1:
        build_parser().error(f"--rounds must be at least 1, got {args.rounds}")
    chosen = PAIRS
    if args.pairs:
        try:
            chosen = [PAIRS[int(i)] for i in args.pairs.split(",")]
        except (ValueError, IndexError):
            build_parser().error(f"--pairs takes row numbers 0-{len(PAIRS) - 1}, "
                                 f"got {args.pairs!r}")
    meta = machine_info(argparse.Namespace(without=()))
    v = meta["versions"]
    command = " ".join(["python -m benchmarks.headline"] + list(
        sys.argv[1:] if argv is None else argv))
    print(f"`{command}`, {meta['date']}; "
          f"{meta['cpu']}, {meta['cores']} cores, {meta['mem_gib']:.0f} GiB; numpy "
          f"{v['numpy']}, numba {v.get('numba', '-')}, torch {v.get('torch', '-')}, "
          f"jax {v.get('jax', '-')}\n")
    print(HEADER)
    for pair in chosen:
        t0 = time.perf_counter()
        row = measure(pair, args.rounds)
        print(f"| {row} |" if row else f"| {' | '.join(map(str, pair))} | peer not installed |",
              flush=True)
        print(f"  ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

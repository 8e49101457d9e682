"""Scaling of the sharded jobs from 1 to 2 Dask workers, and the cluster's overhead.

Run from the repository root::

    python -m benchmarks.scaling                      # MNIST if ../shared is there
    python -m benchmarks.scaling --data digits --jacobian-images 200 --ig-images 40

Two jobs of :mod:`fwdderiv.distributed`, each timed on a running local cluster of one
worker process (with every core: Numba and BLAS threads = cores) and on one of two
worker processes (cores / 2 threads each), the split ``workers=N`` itself makes:

- ``jacobian``: the forward-mode Jacobian of ``--jacobian-images`` images (1,000 MNIST
  test images by default) with LeNet-5 (``fwdderiv.models.lenet5(in_size=28)``);
- ``integrated_gradients``: integrated gradients of the predicted class (50
  Gauss-Legendre points, black baseline) of ``--ig-images`` images (200).

Both clusters are started and warmed up (Numba's kernels loaded in every worker) before
the clock starts; the rounds alternate (1 worker, 2 workers, 1, 2, ...) so that load from
other processes hits both alike. Reported: the median time and its min-max spread,
images per second, and the ratio of each round's times (1 worker / 2 workers: the
speed-up). Both clusters' results are compared (``identical``: np.array_equal).

The overhead row times a small job (``--small`` images) three ways: in this process
without a cluster (``workers=None``), on the running 2-worker cluster, and end to end
with ``workers=2`` (starting and closing the cluster in the call, as the command line's
``--workers 2`` does).

The network has fixed random weights (seed 0) unless ``--trained`` (the project's cached
LeNet-5): the time per image hardly depends on the weights.
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from benchmarks.jsma import _shared_mnist


def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=("mnist", "digits"), default=None,
                   help="default: mnist when ../shared/data/mnist is there, else digits")
    p.add_argument("--data-dir", default=None, help="MNIST's folder (default: ../shared)")
    p.add_argument("--trained", action="store_true", help="the cached trained network")
    p.add_argument("--jacobian-images", type=int, default=1000)
    p.add_argument("--jacobian-shard", type=int, default=125,
                   help="images per shard of the Jacobian job (default 125: 8 shards)")
    p.add_argument("--ig-images", type=int, default=200)
    p.add_argument("--ig-shard", type=int, default=25,
                   help="images per shard of integrated gradients (default 25: 8 shards)")
    p.add_argument("--n-steps", type=int, default=50, help="integrated-gradient points")
    p.add_argument("--small", type=int, default=16, help="images of the overhead row")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per job")
    p.add_argument("--no-end-to-end", dest="end_to_end", action="store_false",
                   help="skip the overhead of starting a cluster in the call")
    p.add_argument("--json", default=None, help="also write the results here")
    return p


def load_case(data, data_dir, trained):
    """(net, images, description)."""
    import fwdderiv as fd
    from fwdderiv.datasets import load_dataset
    if data == "mnist":
        ds = load_dataset("mnist", data_dir=data_dir)
        if trained:
            from fwdderiv.models.trained import pretrained
            net = pretrained("lenet5", "mnist", data_dir=data_dir, progress=False)
        else:
            net = fd.models.lenet5(in_size=28)
        return net, ds.x_test.astype(np.float64), "LeNet-5 on MNIST test images"
    from fwdderiv.models.trained import build_model, pretrained
    ds = load_dataset("digits")
    net = pretrained("digits_net", "digits", progress=False) if trained else \
        build_model("digits_net", (1, 8, 8), seed=0)
    return net, ds.x_test.astype(np.float64), "digits_net on scikit-learn digits"


def start_cluster(workers):
    """A running local cluster of ``workers`` processes, one task thread each, with the
    machine's cores split between them for Numba and BLAS (as ``workers=N`` does)."""
    from distributed import Client, LocalCluster

    from fwdderiv.distributed.cluster import local_threads
    threads = str(local_threads(workers))
    env = {k: threads for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS",
                                "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0", env=env)
    return cluster, Client(cluster)


def jobs(net, x, args):
    """``{name: (images, function(scheduler) -> result)}``."""
    from fwdderiv.attribution import IntegratedGradients
    from fwdderiv.distributed import attribute, jacobian
    xj, xi = x[:args.jacobian_images], x[:args.ig_images]
    target = net(xi).argmax(axis=1)
    return {
        "jacobian": (len(xj), lambda s: jacobian(net, xj, scheduler=s, progress=False,
                                                 shard_size=args.jacobian_shard)),
        "integrated_gradients": (len(xi), lambda s: attribute(
            IntegratedGradients(net), xi, target=target, n_steps=args.n_steps,
            scheduler=s, shard_size=args.ig_shard, progress=False)),
    }


def timed(f, *a):
    t = time.perf_counter()
    out = f(*a)
    return out, time.perf_counter() - t


def scaling_row(images, run, clients, rounds):
    """Alternating rounds on the 1- and 2-worker clusters: times, medians, ratios."""
    one, two = [], []
    results = {}
    for _ in range(rounds):
        for name, client, times in (("1", clients[1], one), ("2", clients[2], two)):
            results[name], t = timed(run, client)
            times.append(t)
    ratio = np.array(one) / np.array(two)
    return {"images": images, "seconds_1_worker": one, "seconds_2_workers": two,
            "median_1_worker": float(np.median(one)), "median_2_workers": float(np.median(two)),
            "spread_1_worker": [min(one), max(one)], "spread_2_workers": [min(two), max(two)],
            "images_per_s_1_worker": images / float(np.median(one)),
            "images_per_s_2_workers": images / float(np.median(two)),
            "speedup_median": float(np.median(ratio)), "speedup_min": float(ratio.min()),
            "speedup_max": float(ratio.max()),
            "identical": bool(np.array_equal(results["1"], results["2"]))}


def overhead_row(net, x, clients, rounds, end_to_end):
    """A small Jacobian in this process, on the running 2-worker cluster, and (with
    ``end_to_end``) with ``workers=2`` starting its own cluster."""
    from fwdderiv.distributed import jacobian
    ways = {"in_process": lambda: jacobian(net, x, progress=False),
            "running_cluster": lambda: jacobian(net, x, scheduler=clients[2], progress=False)}
    if end_to_end:
        ways["workers_2_end_to_end"] = lambda: jacobian(net, x, workers=2, progress=False)
    times = {k: [] for k in ways}
    for _ in range(rounds):
        for k, f in ways.items():
            times[k].append(timed(f)[1])
    row = {"images": len(x), "seconds": times}
    row.update({f"median_{k}": float(np.median(v)) for k, v in times.items()})
    return row


def main(argv=None):
    args = build_parser().parse_args(argv)
    data_dir = args.data_dir or _shared_mnist()
    data = args.data or ("mnist" if data_dir else "digits")
    net, x, what = load_case(data, data_dir, args.trained)
    clusters, clients = {}, {}
    try:
        for n in (1, 2):
            clusters[n], clients[n] = start_cluster(n)
        work = jobs(net, x, args)
        for images, run in work.values():           # warm-up: every worker loads Numba
            for n in (1, 2):
                run(clients[n])
        rows = {name: scaling_row(images, run, clients, args.rounds)
                for name, (images, run) in work.items()}
        rows["overhead"] = overhead_row(net, x[:args.small], clients, args.rounds,
                                        args.end_to_end)
    finally:
        for n in clients:
            clients[n].close()
            clusters[n].close()
    doc = {"case": what, "data": data, "trained": args.trained, "rounds": args.rounds,
           "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
           else os.cpu_count(), "machine": platform.platform(), "rows": rows}
    report(doc)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    return 0


def report(doc):
    print(f"{doc['case']}, {doc['cores']} cores, {doc['rounds']} alternating rounds")
    print(f"{'job':<22}{'images':>7}{'1 worker s':>12}{'2 workers s':>13}"
          f"{'img/s 1':>9}{'img/s 2':>9}  speed-up (min-max)  identical")
    for name, r in doc["rows"].items():
        if name == "overhead":
            continue
        print(f"{name:<22}{r['images']:>7}{r['median_1_worker']:>12.2f}"
              f"{r['median_2_workers']:>13.2f}{r['images_per_s_1_worker']:>9.1f}"
              f"{r['images_per_s_2_workers']:>9.1f}  {r['speedup_median']:.2f} "
              f"({r['speedup_min']:.2f}-{r['speedup_max']:.2f})        {r['identical']}")
    o = doc["rows"]["overhead"]
    parts = [f"{k.replace('median_', '')} {v:.2f} s" for k, v in o.items()
             if k.startswith("median_")]
    print(f"overhead, {o['images']} images: " + ", ".join(parts))


if __name__ == "__main__":
    sys.exit(main())

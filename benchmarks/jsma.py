"""JSMA crafting throughput: fwdderiv against the Adversarial Robustness Toolbox (ART).

Both attack the same trained network (fwdderiv weights copied into a PyTorch module for
ART with :func:`benchmarks.peers.to_torch`) on the same (sample, target) pairs, in the
same process, and both outcomes are scored the same way with the fwdderiv network:
success = prediction equals the target, distortion = fraction of features changed.

fwdderiv runs in float64 (``compute_dtype``'s default); the forward mode is also timed
with ``compute_dtype=np.float32`` (``--float32-modes``), the precision ART computes in.

Run from the repository root::

    python -m benchmarks.jsma                       # MNIST LeNet-5 if ../shared is there
    python -m benchmarks.jsma --data digits --samples 50
    pip install adversarial-robustness-toolbox      # for the ART column

Where ART's ``SaliencyMapMethod`` (1.x) departs from the paper (Papernot et al. 2016,
Algorithms 2-3), read in its source:

- it takes the class gradient of the target only and picks the two features with the
  largest (theta > 0) or smallest target derivative; there is no ``beta`` (the other
  classes), no pair score ``-alpha * beta`` and no sign condition, so it modifies a
  pair even when no admissible pair exists. With a softmax output ``beta = -alpha``
  and the top-2 pair is the paper's choice when it is admissible; on logits it is not;
- the budget ``gamma`` is checked after each step on the fraction of *picked* features
  (``<= gamma`` continues), so a sample can end up to two features over the budget;
- gradients come from reverse mode (one backward pass per iteration), not the forward
  derivative;
- without explicit targets it draws random ones (this benchmark always passes targets).
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.peers import available, to_torch

UPSILON = 0.145


def _shared_mnist():
    env = os.environ.get("FWDDERIV_SHARED")
    root = Path(env) if env else Path(__file__).resolve().parents[1] / ".." / "shared"
    path = root / "data" / "mnist"
    return path if (path / "t10k-images-idx3-ubyte.gz").exists() else None


def load_case(data, data_dir, samples):
    """(net, x, sources, targets, description) for ``samples`` sources x 9 targets."""
    from fwdderiv.attacks import expand_targets
    from fwdderiv.commands.reproduce import select_sources
    from fwdderiv.datasets import load_dataset
    from fwdderiv.models.trained import pretrained

    if data == "mnist":
        ds = load_dataset("mnist", data_dir=data_dir)
        net = pretrained("lenet5", "mnist", data_dir=data_dir, progress=False)
        name = "lenet5(in_size=28) on MNIST"
    else:
        ds = load_dataset("digits")
        net = pretrained("digits_net", "digits", progress=False)
        name = "digits_net on scikit-learn digits"
    pred = net(ds.x_test).argmax(axis=1)
    idx = select_sources(ds.y_test, pred, samples)
    x, src, tgt, _ = expand_targets(ds.x_test[idx], ds.y_test[idx], 10)
    return net, x, src, tgt, name


def score(net, x, x_adv, targets, seconds, times=()):
    """Success rate, distortion and throughput of one crafting run (``seconds``: the
    median of ``times``)."""
    n = x.shape[0]
    ok = net(x_adv.astype(x.dtype)).argmax(axis=1) == targets
    changed = (x_adv.reshape(n, -1) != x.reshape(n, -1)).sum(axis=1)
    m = x[0].size
    return {"seconds": seconds, "times": list(times), "samples_per_s": n / seconds,
            "success_rate": float(ok.mean()),
            "distortion_all": float(changed.mean() / m),
            "distortion_successful": float(changed[ok].mean() / m) if ok.any() else None,
            "max_changed_features": int(changed.max()), "budget_features": int(UPSILON * m)}


def fwdderiv_runner(net, x, targets, batch_size, **kw):
    """A no-argument callable crafting the whole set with fwdderiv (returns x_adv)."""
    from fwdderiv.attacks import jsma

    return lambda: jsma(net, x, targets, upsilon=UPSILON, batch_size=batch_size, **kw).x_adv


def art_runner(net, x, targets, batch_size, gamma=UPSILON):
    """The same with ART's SaliencyMapMethod on the network copied into PyTorch."""
    import torch
    from art.attacks.evasion import SaliencyMapMethod
    from art.estimators.classification import PyTorchClassifier

    torch.set_num_threads(os.cpu_count() or 1)
    model = to_torch(net, "float32")  # ends in Softmax: ART differentiates F, like the paper
    clf = PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(),
                            input_shape=x.shape[1:], nb_classes=10, clip_values=(0.0, 1.0))
    attack = SaliencyMapMethod(clf, theta=1.0, gamma=gamma, batch_size=batch_size,
                               verbose=False)
    onehot = np.eye(10, dtype=np.float32)[targets]
    x32 = x.astype(np.float32)
    return lambda: attack.generate(x32, y=onehot)


def alternate(runners, repeats):
    """Warm every runner up once at full size, then time them in turn (A B C A B C ...),
    ``repeats`` rounds. Returns {name: (last x_adv, [seconds per round])}."""
    out = {}
    for name, run in runners.items():
        out[name] = [run(), []]
    for _ in range(max(1, repeats)):
        for name, run in runners.items():
            t0 = time.perf_counter()
            out[name][0] = run()
            out[name][1].append(time.perf_counter() - t0)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.jsma", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=("mnist", "digits"), default=None,
                   help="default: mnist if the shared MNIST files are found, else digits")
    p.add_argument("--data-dir", type=Path, default=None, help="MNIST directory")
    p.add_argument("--samples", type=int, default=20, help="sources (x 9 targets)")
    p.add_argument("--batch-size", type=int, default=256,
                   help="pairs crafted together, by both implementations (default: 256)")
    p.add_argument("--modes", default="forward,reverse,vjp",
                   help="fwdderiv Jacobian modes to time (comma separated)")
    p.add_argument("--float32-modes", default="forward",
                   help="modes also timed with compute_dtype=float32, the precision ART "
                        "computes in (comma separated; empty for none; default: forward)")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed rounds; in each round every method runs once, in turn "
                        "(A B C A B C ...); the median and range are reported (default 3)")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = p.parse_args(argv)
    data_dir = args.data_dir or _shared_mnist()
    data = args.data or ("mnist" if data_dir else "digits")
    net, x, src, tgt, name = load_case(data, data_dir, args.samples)
    print(f"{name}: {len(x)} (sample, target) pairs, Upsilon {UPSILON}, theta +1, "
          f"batch {args.batch_size}", flush=True)
    runners = {}
    for mode in [m for m in args.modes.split(",") if m]:
        runners[f"fwdderiv jsma ({mode})"] = fwdderiv_runner(net, x, tgt, args.batch_size,
                                                             mode=mode)
    for mode in [m for m in args.float32_modes.split(",") if m]:
        runners[f"fwdderiv jsma ({mode}, float32)"] = fwdderiv_runner(
            net, x, tgt, args.batch_size, mode=mode, compute_dtype=np.float32)
    have_art = available("art") and available("torch")
    if have_art:
        runners["ART SaliencyMapMethod"] = art_runner(net, x, tgt, args.batch_size)
        # ART continues while picked / M <= gamma, so it may take one pair more than
        # floor(Upsilon * M / 2); this gamma stops it at fwdderiv's (the paper's) count.
        m = x[0].size
        pairs = int(UPSILON * m) // 2
        runners["ART, same max features"] = art_runner(net, x, tgt, args.batch_size,
                                                       gamma=(2 * pairs - 1) / m)
    else:
        print("ART not installed (pip install adversarial-robustness-toolbox): skipped",
              file=sys.stderr)
    timings = alternate(runners, args.repeats)
    rows = {}
    for name, (x_adv, times) in timings.items():
        rows[name] = score(net, x, x_adv, tgt, float(np.median(times)), times)
        print(f"  {name}: {rows[name]['seconds']:.2f} s (median of {len(times)}: "
              f"{', '.join(f'{t:.2f}' for t in times)})", flush=True)
    print(f"\n| method | samples/s | success | distortion (successful) | distortion (all) "
          f"| max changed / budget |\n|---|---|---|---|---|---|")
    for k, r in rows.items():
        ds_ = r["distortion_successful"]
        print(f"| {k} | {r['samples_per_s']:.1f} | {100 * r['success_rate']:.2f}% | "
              f"{'-' if ds_ is None else f'{100 * ds_:.2f}%'} | "
              f"{100 * r['distortion_all']:.2f}% | {r['max_changed_features']} / "
              f"{r['budget_features']} |")
    art = timings.get("ART SaliencyMapMethod")
    if art:
        # Throughput ratio per round (the runs of one round are adjacent in time), then
        # its median and range over the rounds.
        for k, (_, times) in timings.items():
            if k.startswith("fwdderiv"):
                ratios = np.array(art[1]) / np.array(times)
                rows[k]["ratio_vs_art"] = {"median": float(np.median(ratios)),
                                           "min": float(ratios.min()),
                                           "max": float(ratios.max())}
                print(f"{k}: {np.median(ratios):.2f}x ART throughput (per round "
                      f"{ratios.min():.2f}-{ratios.max():.2f}x, {len(ratios)} rounds)")
    if args.json:
        args.json.write_text(json.dumps({"case": name, "pairs": len(x), "rows": rows},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
